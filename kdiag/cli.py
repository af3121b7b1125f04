"""Command line: argparse → a validated RunConfig → `kdiag.api.run` → a renderer.

`main(argv, env)` returns an exit status; tests call it in-process with an Env whose
streams are StringIO, and as a subprocess through `python -m kdiag`.
"""

from __future__ import annotations

import argparse
import dataclasses
import shlex
import shutil
import sys
import traceback
from pathlib import Path
from typing import Optional, Sequence, TextIO, Tuple

from kdiag.version import __version__
from kdiag.datamodel.config import KERAS_CHOICES, RunConfig, parse_samples, parse_shape_overrides
from kdiag.datamodel.strategies import BY_KEY
from kdiag.datamodel.versions import parse_tf_versions
from kdiag.errors import ExitStatus, KdiagError
from kdiag.render import FORMATS
from kdiag.runfolder import OUT_FIX, RunFolder, write_atomic
from kdiag.signals import StopSignals, Terminated, active_stop

@dataclasses.dataclass
class Env:
    """Where output goes; injectable so tests run the real CLI."""

    stdout: TextIO = dataclasses.field(default_factory=lambda: sys.stdout)
    stderr: TextIO = dataclasses.field(default_factory=lambda: sys.stderr)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kdiag",
        description="Why is my Keras model's inference slow, and what should I do about it? "
                    "kdiag times every way of calling the model and checks their outputs.",
    )
    parser.add_argument("--version", action="version", version=f"kdiag {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    inspect = commands.add_parser("inspect", help="measure every way of calling a model",
                                  description="Load a model, time every way of calling it, check their outputs.")
    inspect.add_argument("model", nargs="?", help=".keras or .h5/.hdf5 file, or a SavedModel directory")
    inspect.add_argument("--example", metavar="NAME",
                         help="a built-in example instead of a file: tiny, mnist-softmax, mnist-cnn, lstm")
    inspect.add_argument("--batch-size", type=int, metavar="N",
                         help="batch size (default: the model's fixed one, else the example's, else 1)")
    inspect.add_argument("--input-shape", action="append", default=[], metavar="NAME=D1,D2",
                         help="size of dynamic axes after the batch axis, per input (repeatable)")
    inspect.add_argument("--inputs", metavar="FILE", help="your own inputs: .npy (one input) or .npz (by name)")
    inspect.add_argument("--strategies", metavar="A,B", help=f"only these: {','.join(BY_KEY)}")
    inspect.add_argument("--budget", type=float, default=1.0, metavar="SECONDS",
                         help="timed seconds per strategy (default 1); the sweeps, memory loops and op "
                              "breakdown get their budgets in proportion")
    inspect.add_argument("--min-calls", type=int, default=5, metavar="N", help="timed calls at least (default 5)")
    inspect.add_argument("--time-limit", type=float, default=60.0, metavar="SECONDS",
                         help="for the whole run, loading to report (default 60; 0: none): what would not fit is "
                              "left out and the report says what, and the limit that would fit it")
    inspect.add_argument("--format", choices=FORMATS, default="terminal", help="what to print on stdout")
    inspect.add_argument("--verbose", action="store_true",
                         help="terminal: every section and column (environment, top functions, p99, first call)")
    inspect.add_argument("--no-redact", action="store_true",
                         help="keep local paths in report.md (default: ~, <python>, <model-dir>) and write no "
                              "redacted/ copies of the .prof files")
    inspect.add_argument("--unsafe", action="store_true",
                         help="allow Lambda layers to be deserialised (runs code from the file)")
    inspect.add_argument("--custom-objects", metavar="MODULE.py",
                         help="a Python file defining the model's custom classes (its code runs)")
    inspect.add_argument("--out", metavar="DIR",
                         help="run folder for report.html, report.md, report.json and the .prof files "
                              "(default: reports/<model>-<timestamp>/); never overwritten")
    inspect.add_argument("--profile", metavar="A,B", default="",
                         help="also profile these strategies (predict before and after compile() always are)")
    inspect.add_argument("--profile-calls", type=int, default=10, metavar="N",
                         help="warm calls per cProfile pass (default 10)")
    inspect.add_argument("--no-profile", action="store_true", help="skip the cProfile passes")
    inspect.add_argument("--cpp", action="store_true",
                         help="also time the C++ floor: the exported SavedModel through the TF C API (cpp_baseline/)")
    inspect.add_argument("--keras", choices=KERAS_CHOICES, default=None,
                         help="which Keras runs the model: 3 (the default; 2 under TF_USE_LEGACY_KERAS=1), 2 "
                              "(tf-keras, in a child process), or both side by side in one report (needs tf-keras: "
                              "pip install kdiag[legacy])")
    inspect.add_argument("--samples", metavar="N,N",
                         help="sample counts for the data-size sweep (default: one batch, 256, 4096, 65536 "
                              "as the time allows)")
    inspect.add_argument("--no-sweeps", action="store_true",
                         help="skip the data-size and batch-size sweeps")
    inspect.add_argument("--no-memory-loop", action="store_true",
                         help="skip the sustained loops that watch memory over many calls")
    inspect.add_argument("--no-ops", action="store_true",
                         help="skip the op breakdown (TensorFlow profiler + XProf) and the threads comparison")
    inspect.add_argument("--tf", metavar="V,V",
                         help="TensorFlow releases side by side, each in its own cached environment, in alternating "
                              "rounds: e.g. 2.15,installed,nightly (2.15: the newest 2.15.x the index serves; "
                              "installed: this environment's). kdiag envs lists the environments")
    inspect.add_argument("--save-inputs", metavar="FILE.npz",
                         help="also save the input batch the run used (time the same data again with --inputs)")
    inspect.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks for errors")

    _add_bisect_parser(commands)
    envs = commands.add_parser("envs", help="the cached TensorFlow environments of --tf and bisect",
                               description="List the cached environments (one per TensorFlow release and Python), "
                                           "with their sizes and last use, or remove them.")
    envs_commands = envs.add_subparsers(dest="envs_command", metavar="ACTION")
    envs_rm = envs_commands.add_parser("rm", help="remove environments: VERSION (2.15 or 2.15.1) or --all")
    envs_rm.add_argument("version", nargs="?", metavar="VERSION", help="a release (2.15.1) or a series (2.15)")
    envs_rm.add_argument("--all", action="store_true", help="remove every cached environment")
    commands.add_parser("examples", help="list the built-in example models")
    view = commands.add_parser("view", help="open a run's report.html, or a .prof file in snakeviz",
                               description="Open a run folder's report.html, or a profile in snakeviz, in the "
                                           "browser, served on 127.0.0.1 unless --host says otherwise.")
    view.add_argument("prof", metavar="RUN_OR_PROF", help="a run folder of kdiag inspect, or a .prof file from one")
    view.add_argument("--server", action="store_true", help="do not open a browser; print the URL and serve")
    view.add_argument("--host", default=None, metavar="ADDR",
                      help="address to bind (default 127.0.0.1; anything else exposes your profile to the network)")
    view.add_argument("--port", type=int, default=8080, help="port (default 8080; a free one is picked if taken)")
    commands.add_parser("rules", help="print the phase rules and the diagnosis thresholds kdiag applies")
    compare = commands.add_parser("compare", help="compare two saved runs (report.json); gate CI on regressions",
                                  description="Per-strategy and per-phase changes between two runs, from their "
                                              "report.json; nothing is re-run.")
    compare.add_argument("before", help="report.json of the earlier run")
    compare.add_argument("after", help="report.json of the later run")
    compare.add_argument("--fail-above", type=float, default=None, metavar="PERCENT",
                         help="exit 3 when a strategy or phase is slower by more than this (and beyond noise)")
    cpp = commands.add_parser("cpp", help="the C++ baseline (TF C API)")
    cpp_commands = cpp.add_subparsers(dest="cpp_command", metavar="ACTION", required=True)
    cpp_build = cpp_commands.add_parser("build", help="build cpp_baseline/ against the installed TensorFlow")
    cpp_build.add_argument("--force", action="store_true", help="rebuild even when the cached binary is current")
    return parser


def _add_bisect_parser(commands) -> None:
    bisect = commands.add_parser(
        "bisect", help="find the TensorFlow release that made predict slow",
        description="Binary search over the TensorFlow releases the package index serves from --good to --bad: "
                    "each probed release is timed against the good one in alternating rounds, to the first one "
                    "slower beyond the noise by at least --threshold. At most ceil(log2(n)) + 2 environments.")
    bisect.add_argument("model", nargs="?", help=".keras or .h5/.hdf5 file, or a SavedModel directory")
    bisect.add_argument("--example", metavar="NAME", help="a built-in example instead of a file")
    bisect.add_argument("--good", required=True, metavar="RELEASE", help="a release where it was fast, e.g. 2.12")
    bisect.add_argument("--bad", required=True, metavar="RELEASE", help="a release where it is slow, e.g. 2.21")
    bisect.add_argument("--strategy", default="predict", metavar="KEY",
                        help=f"the strategy to time (default predict): {','.join(BY_KEY)}")
    bisect.add_argument("--threshold", type=float, default=1.2, metavar="RATIO",
                        help="slow means slower than --good beyond the noise by at least this ratio (default 1.2)")
    bisect.add_argument("--batch-size", type=int, metavar="N", help="batch size (default: as kdiag inspect)")
    bisect.add_argument("--input-shape", action="append", default=[], metavar="NAME=D1,D2",
                        help="size of dynamic axes after the batch axis, per input (repeatable)")
    bisect.add_argument("--inputs", metavar="FILE", help="your own inputs: .npy (one input) or .npz (by name)")
    bisect.add_argument("--budget", type=float, default=1.0, metavar="SECONDS",
                        help="timed seconds per run (default 1)")
    bisect.add_argument("--min-calls", type=int, default=5, metavar="N", help="timed calls at least (default 5)")
    bisect.add_argument("--time-limit", type=float, default=60.0, metavar="SECONDS",
                        help="per run (default 60); a probe's rounds stop at twice this")
    bisect.add_argument("--unsafe", action="store_true", help="allow Lambda layers (runs code from the file)")
    bisect.add_argument("--custom-objects", metavar="MODULE.py",
                        help="a Python file defining the model's custom classes (its code runs)")
    bisect.add_argument("--format", choices=("terminal", "json"), default="terminal", help="what to print at the end")
    bisect.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks for errors")


def main(argv: Optional[Sequence[str]] = None, env: Optional[Env] = None) -> int:
    env = env or Env()
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # argparse printed its usage message already
        return ExitStatus.OK if exit_.code == 0 else ExitStatus.BAD_INPUT
    if args.command is None:
        parser.print_help(env.stdout)
        return ExitStatus.OK
    try:
        if args.command == "inspect":
            with StopSignals(env.stderr):  # SIGTERM stops like Ctrl-C; a second signal waits for the save
                return run_inspect(request_from_args(args, argv), env)
        if args.command == "bisect":
            with StopSignals(env.stderr):
                return run_bisect(args, argv, env)
        if args.command == "envs":
            return run_envs(args, env)
        if args.command == "examples":
            return run_examples(env)
        if args.command == "cpp":
            return run_cpp_build(args.force, env)
        if args.command == "view":
            from kdiag.view import view

            return view(Path(args.prof), server=args.server, host=args.host, port=args.port, stdout=env.stdout)
        if args.command == "compare":
            return run_compare(args, env)
        if args.command == "rules":
            from kdiag.analysis.diagnose import thresholds_table
            from kdiag.engine.phases import RULESETS, listing
            from kdiag.render.rules import render as render_rules

            env.stdout.write(render_rules([listing(r) for r in RULESETS.values()], thresholds_table()))
            return ExitStatus.OK
    except KdiagError as error:
        if args.debug:
            traceback.print_exc(file=env.stderr)
        print(f"kdiag: error: {error.message}", file=env.stderr)
        return ExitStatus.BAD_INPUT
    except KeyboardInterrupt as stop:
        terminated = isinstance(stop, Terminated)
        print("kdiag: terminated (SIGTERM)" if terminated else "kdiag: interrupted", file=env.stderr)
        return ExitStatus.TERMINATED if terminated else ExitStatus.INTERRUPTED
    return ExitStatus.ERROR


@dataclasses.dataclass(frozen=True)
class InspectRequest:
    """`kdiag inspect` as asked: the run's configuration, and what the CLI does with its Report."""

    config: RunConfig
    format: str
    out: Optional[str]
    verbose: bool = False


def request_from_args(args, argv) -> InspectRequest:
    if args.keras is not None:
        from kdiag.engine.keras_child import require_tf_keras

        require_tf_keras(args.keras)  # before anything is claimed or run
    custom_objects = None
    if args.custom_objects:
        from kdiag.engine.custom_objects import load_custom_objects

        custom_objects = load_custom_objects(args.custom_objects)
    config = RunConfig(
        model=args.model,
        example=args.example,
        inputs=args.inputs,
        batch_size=args.batch_size,
        input_shapes=parse_shape_overrides(args.input_shape),
        strategies=_keys(args.strategies) if args.strategies else None,
        budget_s=args.budget,
        min_calls=args.min_calls,
        unsafe=args.unsafe,
        custom_objects=custom_objects,
        cpp=args.cpp,
        profile=not args.no_profile,
        profile_strategies=_keys(args.profile),
        profile_calls=args.profile_calls,
        time_limit_s=args.time_limit,
        redact=not args.no_redact,
        command="kdiag " + " ".join(shlex.quote(a) for a in argv),
        keras=args.keras,
        custom_objects_file=args.custom_objects,
        samples=parse_samples(args.samples) if args.samples is not None else None,
        sweeps=not args.no_sweeps,
        memory_loops=not args.no_memory_loop,
        ops=not args.no_ops,
        tf_versions=parse_tf_versions(args.tf) if args.tf is not None else None,
        save_inputs=args.save_inputs,
    )
    return InspectRequest(config, args.format, args.out, args.verbose)


def _keys(text: str) -> Tuple[str, ...]:
    return tuple(k.strip() for k in text.split(",") if k.strip())


def run_inspect(request: InspectRequest, env: Env) -> int:
    from kdiag.api import RunFailed, RunInterrupted, run
    from kdiag.render import render

    config = request.config
    run_folder = RunFolder.claim(config.model_label, Path(request.out) if request.out else None)
    folder = run_folder.path
    progress = _progress(env)
    try:
        try:
            report = run(config, progress=progress, out_dir=folder)
        finally:
            progress.close()
    except (RunInterrupted, RunFailed) as stopped:  # stopped once timing began: what was measured is kept
        return run_folder.keep_measured(stopped, save_run, env.stderr)
    except BaseException:
        run_folder.discard()  # nothing was measured, so nothing is left behind
        raise
    rendered = {}  # the texts save_run wrote, so stdout need not render one twice

    def write(report, folder):
        rendered.clear()
        rendered.update(save_run(report, folder))

    saved = run_folder.save(report, write)
    if saved.refused_by is not None:
        raise KdiagError(f"the report is saved {saved.where()}", "next time " + OUT_FIX)
    # Said before the report, so that the report's verdict is the last line on the screen.
    print(f"kdiag: run saved in {folder}/ (report.html: open it with `kdiag view {shlex.quote(str(folder))}`; "
          "report.md, report.json, repro.py" + (", .prof files" if any(p.prof_path for p in report.profiles) else "")
          + ")", file=env.stderr)
    env.stderr.flush()
    if request.format == "terminal" and _is_terminal(env.stdout):
        from kdiag.render.terminal import print_report

        print_report(report, verbose=request.verbose, saved=True)
    elif request.format == "terminal":  # piped: as wide as COLUMNS says, else 80, and no colour
        width = shutil.get_terminal_size((80, 24)).columns
        env.stdout.write(_printable(render(report, "terminal", width=width, verbose=request.verbose, saved=True),
                                    env.stdout))
    else:
        text = rendered.get(request.format) or render(report, request.format)
        env.stdout.write(_printable(text, env.stdout))
    return active_stop().exit_status  # a Ctrl-C or SIGTERM during the save waited for it


def _printable(text: str, stream) -> str:
    """Text the stream can encode: a lone surrogate from a non-UTF-8 file name becomes an escape."""
    encoding = getattr(stream, "encoding", None) or "utf-8"
    return text.encode(encoding, errors="backslashreplace").decode(encoding)


def save_run(report, folder: Path) -> dict:
    """Write the run's reports and repro.py; returns the reports' texts by format, so stdout need not
    render one twice."""
    from kdiag.render import render, repro

    texts = {fmt: render(report, fmt) for fmt in ("json", "markdown", "html")}
    write_atomic(folder / "report.json", texts["json"])
    write_atomic(folder / "report.md", texts["markdown"])
    write_atomic(folder / "report.html", texts["html"])
    write_atomic(folder / repro.FILE_NAME, repro.render(report))  # standalone: TensorFlow alone runs it
    return texts


def run_bisect(args, argv, env: Env) -> int:
    """`kdiag bisect`: progress on stderr, a line per probe as it ends, then the result."""
    from kdiag.api import bisect
    from kdiag.render import bisect as text
    from kdiag.versions.rounds import Stopped

    probes_out = env.stdout if args.format == "terminal" else env.stderr

    def ended(result, probe) -> None:
        if len(result.probes) == 1:
            print(text.header(result), file=probes_out)
        print(text.probe_text(result, probe), file=probes_out, flush=True)

    progress = _progress(env)
    try:
        try:
            result = bisect(args.model, example=args.example, good=args.good, bad=args.bad, strategy=args.strategy,
                            threshold=args.threshold, batch_size=args.batch_size,
                            input_shapes=parse_shape_overrides(args.input_shape), inputs=args.inputs,
                            budget_s=args.budget, min_calls=args.min_calls, time_limit_s=args.time_limit,
                            unsafe=args.unsafe, custom_objects=args.custom_objects, progress=progress,
                            on_probe=ended, command="kdiag " + " ".join(shlex.quote(a) for a in argv))
        finally:
            progress.close()
    except Stopped as stopped:  # what finished is printed already; the partial result says where it stopped
        if stopped.report is not None:
            env.stdout.write(_printable(text.summary_text(stopped.report) if args.format == "terminal"
                                        else text.render_json(stopped.report), env.stdout))
        raise KeyboardInterrupt() from None
    print("", file=probes_out)
    env.stdout.write(_printable(text.summary_text(result) if args.format == "terminal" else text.render_json(result),
                                env.stdout))
    return active_stop().exit_status


def run_envs(args, env: Env) -> int:
    """`kdiag envs` (list) and `kdiag envs rm VERSION|--all`."""
    from kdiag.versions.environments import EnvironmentCache, listing

    cache = EnvironmentCache()
    cache.remove_leftovers()
    if args.envs_command != "rm":
        env.stdout.write(_printable(listing(cache), env.stdout))
        return ExitStatus.OK
    if args.all == (args.version is not None):
        raise KdiagError("kdiag envs rm takes a VERSION or --all", "e.g. kdiag envs rm 2.15, or kdiag envs rm --all")
    doomed = cache.environments() if args.all else cache.matching(args.version)
    if not doomed and not args.all:
        raise KdiagError(f"no cached environment holds TensorFlow {args.version}",
                         "kdiag envs lists the cached environments")
    freed = 0
    for environment in doomed:
        freed += cache.remove(environment)
        print(f"kdiag: removed {environment.name}", file=env.stdout)
    from kdiag.views import size_text

    print(f"kdiag: {len(doomed)} environment{'s' if len(doomed) != 1 else ''} removed, {size_text(freed)} freed",
          file=env.stdout)
    return ExitStatus.OK


def run_examples(env: Env) -> int:
    from kdiag.engine.examples import all_examples

    for example in all_examples().values():
        print(f"{example.name:14} batch {example.batch_size:<3} {example.description}", file=env.stdout)
    return ExitStatus.OK


def run_compare(args, env: Env) -> int:
    from kdiag.analysis.compare import compare_reports, exit_status
    from kdiag.datamodel.report import read_report
    from kdiag.render.comparison import render as render_comparison

    before, after = read_report(Path(args.before)), read_report(Path(args.after))
    threshold = args.fail_above if args.fail_above is not None else 10.0
    comparison = compare_reports(before, after, threshold, before_label=args.before, after_label=args.after)
    env.stdout.write(render_comparison(comparison))
    return exit_status(comparison) if args.fail_above is not None else ExitStatus.OK


def run_cpp_build(force: bool, env: Env) -> int:
    from kdiag.engine import cpp

    binary = cpp.build(force=force)
    print(f"kdiag: C++ baseline built: {binary}", file=env.stdout)
    return ExitStatus.OK


def _progress(env: Env):
    from kdiag.render.terminal import StderrProgress

    return StderrProgress(env.stderr)


def _is_terminal(stream) -> bool:
    return stream is sys.stdout and hasattr(stream, "isatty") and stream.isatty()
