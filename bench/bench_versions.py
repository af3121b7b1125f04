"""Benchmark: one model across TensorFlow releases (`kdiag inspect --tf`, `kdiag bisect`), with real downloads.

Uses the real user cache of environments (`kdiag envs`) and the package index pip is configured for.
Prints:

1. a Keras 2-era .h5 (a 57k-parameter CNN written by tf-keras here) under `--tf 2.15,installed`,
   every step on, twice: cold (the 2.15.1 environment removed first, and pip given an empty download
   cache, so everything is fetched) and warm (the environment reused); kdiag's wall time for each, and
   both releases' predict medians with the judgement;
2. `kdiag bisect` on that file between 2.12 and 2.21: the releases probed, each one's predict median
   against the good one's, and the result; its wall time; then the same with `--strategy eager`
   (model(x) called directly), which the 2.12-against-2.21 comparison here found slower beyond the noise;
3. the refusals: a Keras 3 .keras under `--tf 2.15,installed` (the 2.15 column), and `--tf 2.99`;
4. the disk size of one environment.

Not a test: the figures depend on the machine and the network.

    python bench/bench_versions.py             # all of it (about 20 minutes here, cold downloads included)
    python bench/bench_versions.py bisect      # only some parts: inspect (cold and warm), warm, bisect, refusals,
                                               # disk
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def kdiag(*argv, env=None, cwd=None):
    """`python -m kdiag ARGV` from this checkout; (exit status, stdout, stderr, wall seconds)."""
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "kdiag", *map(str, argv)], capture_output=True, text=True,
                          cwd=cwd, env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})})
    return done.returncode, done.stdout, done.stderr, time.perf_counter() - started


def write_models(folder: Path) -> tuple:
    """The Keras 2-era .h5 (tf-keras, compiled: it carries its training config) and a Keras 3 .keras."""
    code = f"""
import json, os
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
import h5py, tf_keras as k
k.utils.set_random_seed(0)
m = k.Sequential([k.layers.Input((28, 28, 1)), k.layers.Conv2D(16, 3, activation="relu"), k.layers.MaxPooling2D(),
                  k.layers.Conv2D(32, 3, activation="relu"), k.layers.MaxPooling2D(), k.layers.Flatten(),
                  k.layers.Dense(64, activation="relu"), k.layers.Dense(10, activation="softmax")], name="cnn")
m.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
m.save({str(folder / 'cnn.h5')!r})
# tf-keras >= 2.16 writes an InputLayer key, 'optional', that the Keras 2 of TensorFlow 2.12-2.15 rejects;
# a file saved by those releases has none. Removed so that every release from 2.12 can read the file.
with h5py.File({str(folder / 'cnn.h5')!r}, "r+") as f:
    config = json.loads(f.attrs["model_config"])
    for layer in config["config"]["layers"]:
        layer["config"].pop("optional", None)
    f.attrs["model_config"] = json.dumps(config)
import keras
i = keras.Input((28, 28, 1)); x = keras.layers.Conv2D(16, 3, activation="relu")(i)
keras.Model(i, keras.layers.Dense(10)(keras.layers.Flatten()(x))).save({str(folder / 'k3.keras')!r})
print(m.count_params())
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(done.stderr)
    return folder / "cnn.h5", folder / "k3.keras", int(done.stdout.split()[-1])


def versions_summary(report_json: Path) -> list:
    from kdiag.datamodel.report import read_report
    from kdiag.views import sections
    from kdiag.views import versions as vv

    report = read_report(report_json)
    section = sections.side_by_side(report)
    table = section.subsections[0].tables[0]
    lines = ["    " + " | ".join(column.header for column in table.columns)]
    lines += ["    " + " | ".join(cell.text for cell in row) for row in table.rows
              if row[0].text in ("predict", "predict_on_batch", "concrete function", "compile() on predict")]
    lines += [f"    {paragraph}" for sub in section.subsections[1:2] for paragraph in sub.after]  # moved most
    lines += [f"    finding: [{f.severity}] {f.title}" for f in report.findings if f.id == "tf-versions"]
    lines += [f"    {line}" for line in vv.release_lines(report)[:-1]]
    return lines


def inspect_tf(model: Path, out: Path, cold: bool) -> None:
    from kdiag.versions.environments import EnvironmentCache

    env = {}
    if cold:
        cache = EnvironmentCache()
        for environment in cache.matching("2.15"):
            cache.remove(environment)
        env["PIP_CACHE_DIR"] = tempfile.mkdtemp(prefix="kdiag-bench-pip-")  # nothing cached: real downloads
    argv = ["inspect", model, "--tf", "2.15,installed", "--out", out]
    code, stdout, stderr, wall = kdiag(*argv, env=env)
    print(f"\n{'cold' if cold else 'warm'}: kdiag {' '.join(shlex.quote(str(a)) for a in argv)}"
          + ("  (2.15 environment removed, PIP_CACHE_DIR empty)" if cold else ""))
    if code != 0:
        print(f"  exit {code}:\n{stderr[-3000:]}")
        return
    print(f"  wall time {wall:.0f} s")
    print("\n".join(versions_summary(out / "report.json")))


def bisect(model: Path, strategy: str = "predict") -> None:
    argv = ["bisect", model, "--good", "2.12", "--bad", "2.21", "--strategy", strategy, "--format", "json"]
    code, stdout, stderr, wall = kdiag(*argv)
    print(f"\nkdiag {' '.join(shlex.quote(str(a)) for a in argv)}")
    if code != 0:
        print(f"  exit {code}:\n{stderr[-3000:]}")
        return
    result = json.loads(stdout)
    print(f"  wall time {wall:.0f} s; {len(result['releases'])} releases: {', '.join(result['releases'])}")
    for probe in result["probes"]:
        good, probed = probe["good"], probe["probed"]
        if good is None or probed is None:
            print(f"  {probe['tensorflow']}: {probe['reason'] or probe['verdict']}")
            continue
        fresh = probe["environment"]["fresh"] if probe["environment"] else None
        print(f"  {probe['tensorflow']}: {result['strategy']} {probed['median_s'] * 1e3:.2f} ms (IQR "
              f"{probed['iqr_s'] * 1e3:.2f}, "
              f"n={probed['count']}) vs {result['good']} {good['median_s'] * 1e3:.2f} ms (IQR "
              f"{good['iqr_s'] * 1e3:.2f}, n={good['count']}), {probe['rounds']} rounds"
              f"{', environment built fresh' if fresh else ''}: {probe['verdict']}")
    print(f"  first slow: {result['first_slow']}, last good: {result['last_good']}; "
          f"{len(result['probes'])} probes, {1 + len(result['probes'])} environments "
          f"(promised at most {result['max_environments']}); ratio {result['ratio']}")
    for note in result["notes"]:
        print(f"  note: {note}")


def refusals(keras3: Path, model: Path, folder: Path) -> None:
    from kdiag.datamodel.report import read_report
    from kdiag.views import versions as vv

    quick = ["--strategies", "predict,concrete", "--no-profile", "--no-sweeps", "--no-memory-loop", "--no-ops",
             "--budget", "0.2"]
    argv = ["inspect", keras3, "--tf", "2.15,installed", *quick, "--out", folder / "k3"]
    code, stdout, stderr, wall = kdiag(*argv)
    print(f"\nkdiag {' '.join(shlex.quote(str(a)) for a in argv)}\n  exit {code}, {wall:.0f} s")
    if code == 0:
        report = read_report(folder / "k3" / "report.json")
        for entry in vv.entries(report):
            predict = entry.report.strategy("predict") if entry.report else None
            print(f"  {entry.run.label}: " + (entry.run.reason or
                                              f"predict {predict.median_s * 1e3:.1f} ms over {entry.run.rounds} runs"))
    else:
        print(stderr[-2000:])
    argv = ["inspect", model, "--tf", "2.99,installed", "--out", folder / "nope"]
    code, stdout, stderr, wall = kdiag(*argv)
    print(f"\nkdiag {' '.join(shlex.quote(str(a)) for a in argv)}\n  exit {code}, {wall:.1f} s: "
          f"{stderr.strip().splitlines()[-1] if stderr.strip() else '(no output)'}")


def disk() -> None:
    from kdiag.versions.environments import EnvironmentCache, disk_usage, listing

    cache = EnvironmentCache()
    print("\n" + listing(cache).rstrip())
    for environment in cache.environments():
        if environment.tensorflow.startswith("2.15"):
            print(f"  one environment ({environment.name}): {disk_usage(environment.path) / 1e9:.2f} GB on disk")


def main() -> None:
    parts = [a for a in sys.argv[1:] if not a.startswith("-")] or ["inspect", "bisect", "refusals", "disk"]
    with tempfile.TemporaryDirectory(prefix="kdiag-bench-versions-") as scratch:
        folder = Path(scratch)
        model, keras3, parameters = write_models(folder)
        print(f"model: {model.name}, {parameters:,} parameters, written by tf-keras (Keras 2-era .h5); machine: "
              f"{os.cpu_count()} cores, shared with other work while this ran")
        if "inspect" in parts:
            inspect_tf(model, folder / "cold", cold=True)
        if "inspect" in parts or "warm" in parts:
            inspect_tf(model, folder / "warm", cold=False)
        if "bisect" in parts:
            bisect(model)
            bisect(model, "eager")
        if "refusals" in parts:
            refusals(keras3, model, folder)
        if "disk" in parts:
            disk()


if __name__ == "__main__":
    main()
