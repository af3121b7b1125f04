"""Command line: argparse → a validated RunConfig → `kdiag.api.run` (the steps of kdiag.steps.pipeline) → a renderer.

`main(argv, env)` returns an exit status; tests call it in-process with an Env whose
streams are StringIO, and as a subprocess through `python -m kdiag`.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shlex
import shutil
import sys
import textwrap
import time
import traceback
from pathlib import Path
from typing import Optional, Sequence, TextIO

from kdiag import sanitize
from kdiag.version import __version__
from kdiag.datamodel.config import RunConfig
from kdiag.datamodel.config import add_arguments as add_run_options
from kdiag.datamodel.config import from_arguments as run_config_from
from kdiag.errors import ExitStatus, KdiagError
from kdiag.render import STDOUT_FORMATS
from kdiag.runfolder import OUT_FIX, RunFolder, save_run, saved_files
from kdiag.signals import StopSignals, Terminated, active_stop

#: The problem and the fix of an error line are cut beyond these (saying how much): a file can make
#: a message as long as it likes, and the fix must still be on the screen.
PROBLEM_LIMIT = 2000
FIX_LIMIT = 500

@dataclasses.dataclass
class Env:
    """Where output goes; injectable so tests run the real CLI."""

    stdout: TextIO = dataclasses.field(default_factory=lambda: sys.stdout)
    stderr: TextIO = dataclasses.field(default_factory=lambda: sys.stderr)


class HelpFormatter(argparse.HelpFormatter):
    """Help wrapped at spaces only: a strategy key (predict-compiled, tf-function) or an example's name
    (mnist-softmax) is never broken at its hyphen."""

    def _split_lines(self, text, width):
        return textwrap.wrap(" ".join(text.split()), width, break_on_hyphens=False)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kdiag", formatter_class=HelpFormatter,
        description="Why is my Keras model's inference slow, and what should I do about it? "
                    "kdiag times every way of calling the model and checks their outputs.",
    )
    parser.add_argument("--version", action="version", version=f"kdiag {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    add_parser = commands.add_parser
    commands.add_parser = lambda *a, **k: add_parser(*a, formatter_class=HelpFormatter, **k)

    inspect = commands.add_parser("inspect", help="measure every way of calling a model",
                                  description="Load a model, time every way of calling it, check their outputs.")
    add_run_options(inspect)  # every RunConfig option, spelled once in kdiag.datamodel.config
    inspect.add_argument("--format", choices=STDOUT_FORMATS, default="terminal", help="what to print on stdout")
    inspect.add_argument("--verbose", action="store_true",
                         help="terminal: every section and column (environment, top functions, p99, first call)")
    inspect.add_argument("--out", metavar="DIR",
                         help="run folder for report.html, report.md, report.json and the .prof files "
                              "(default: reports/<model>-<timestamp>/); never overwritten")
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
                         help="exit 3 when a strategy or phase is slower by more than this (and beyond noise), "
                              "or when a strategy measured in the first run was not measured in the second")
    compare.add_argument("--allow-missing", action="store_true",
                         help="with --fail-above: do not fail on strategies measured only in the first run")
    cpp = commands.add_parser("cpp", help="the C++ baseline (TF C API)")
    cpp_commands = cpp.add_subparsers(dest="cpp_command", metavar="ACTION", required=True)
    cpp_build = cpp_commands.add_parser("build", help="build cpp_baseline/ against the installed TensorFlow")
    cpp_build.add_argument("--force", action="store_true", help="rebuild even when the cached binary is current")
    return parser


#: The RunConfig options `kdiag bisect` takes: the model and its inputs, and how each child run times it.
BISECT_OPTIONS = ("model", "example", "inputs", "batch_size", "input_shapes", "budget_s", "min_calls", "max_wall_s",
                  "time_limit_s", "unsafe", "custom_objects_file")


def _add_bisect_parser(commands) -> None:
    bisect = commands.add_parser(
        "bisect", help="find the TensorFlow release that made predict slow",
        description="Binary search over the TensorFlow releases the package index serves from --good to --bad: "
                    "each probed release is timed against the good one in alternating rounds, to the first one "
                    "slower beyond the noise by at least --threshold. At most ceil(log2(n)) + 2 environments. "
                    "--time-limit applies to each child run; a probe's rounds stop at twice it.")
    add_run_options(bisect, BISECT_OPTIONS)  # spelled once, in kdiag.datamodel.config
    bisect.add_argument("--good", required=True, metavar="RELEASE", help="a release where it was fast, e.g. 2.12")
    bisect.add_argument("--bad", required=True, metavar="RELEASE", help="a release where it is slow, e.g. 2.21")
    bisect.add_argument("--strategy", default="predict", metavar="KEY",
                        help="the strategy to time (default predict): a key of kdiag inspect --strategies")
    bisect.add_argument("--threshold", type=float, default=1.2, metavar="RATIO",
                        help="slow means slower than --good beyond the noise by at least this ratio (default 1.2)")
    bisect.add_argument("--format", choices=("terminal", "json"), default="terminal", help="what to print at the end")
    bisect.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks for errors")


def main(argv: Optional[Sequence[str]] = None, env: Optional[Env] = None) -> int:
    started = time.perf_counter()  # --time-limit counts from here: loading --custom-objects included
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
    if args.debug:  # TensorFlow's own warnings too: a failing call's, with its Python traceback
        level = os.environ.get("TF_CPP_MIN_LOG_LEVEL", "")
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = level if level in ("0", "1") else "1"
    try:
        return _dispatch(args, argv, env, started)
    except KdiagError as error:
        if args.debug:
            env.stderr.write(sanitize.terminal(traceback.format_exc(), multiline=True))
        # The message quotes the file (names, versions, exception text): shown as escapes, one line.
        print(f"kdiag: error: {error_line(error)}", file=env.stderr)
        return ExitStatus.BAD_INPUT
    except KeyboardInterrupt as stop:
        terminated = isinstance(stop, Terminated)
        print("kdiag: terminated (SIGTERM)" if terminated else "kdiag: interrupted", file=env.stderr)
        return ExitStatus.TERMINATED if terminated else ExitStatus.INTERRUPTED


def _dispatch(args, argv, env: Env, started: float) -> int:
    """Run the subcommand `args` names; main() turns what it raises into exit statuses."""
    if args.command in ("inspect", "bisect"):
        with StopSignals(env.stderr):  # SIGTERM stops like Ctrl-C; a second signal waits for the save
            return run_measuring(args, argv, env, started)
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
    return ExitStatus.ERROR


def entry() -> None:
    """The `kdiag` command and `python -m kdiag`: `main()`, then the process ends with its status, at
    once when a model call that could not be stopped is still running (kdiag.steps.worker.leave says
    why and what is cleaned first). `main()` itself always returns: tests call it in-process."""
    from kdiag.steps.worker import leave

    status = main()
    leave(status)
    # Everything is written and flushed by now. Freezing the heap spares the interpreter's last garbage
    # collections a walk over TensorFlow's and Keras' millions of objects: exiting took ~0.8 s less
    # on the tiny example here. Finalizers and atexit handlers still run.
    import gc

    gc.freeze()
    sys.exit(status)


def error_line(error: KdiagError) -> str:
    """The `kdiag: error:` line's text: the message quotes the file (names, versions, exception
    text), so control characters are shown as escapes and it stays one line of bounded length."""
    return KdiagError(sanitize.clip(sanitize.terminal(error.problem), PROBLEM_LIMIT),
                      sanitize.clip(sanitize.terminal(error.fix), FIX_LIMIT)).message


def run_measuring(args, argv, env: Env, started: Optional[float] = None) -> int:
    """The commands that measure, under StopSignals: inspect and bisect."""
    if args.command == "bisect":
        return run_bisect(args, argv, env)
    return run_inspect(request_from_args(args, argv), env, started)


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
    config = run_config_from(args, custom_objects=_custom_objects(args), command=_command(argv))
    return InspectRequest(config, args.format, args.out, args.verbose)


def _custom_objects(args):
    """What the --custom-objects module defines (its code runs), or None."""
    if not args.custom_objects_file:
        return None
    from kdiag.engine.intake.custom_objects import load_custom_objects

    return load_custom_objects(args.custom_objects_file)


def _command(argv) -> str:
    return "kdiag " + " ".join(shlex.quote(a) for a in argv)


def run_inspect(request: InspectRequest, env: Env, started: Optional[float] = None) -> int:
    from kdiag.api import RunFailed, RunInterrupted, run
    from kdiag.render import render

    config = request.config
    run_folder = RunFolder.claim(config.model_label, Path(request.out) if request.out else None)
    folder = run_folder.path
    if run_folder.took_over:
        print(f"kdiag: {folder}/ held the partial files of a kdiag run that was killed before it saved a report "
              f"({sanitize.joined(sanitize.terminal(name) for name in run_folder.took_over)}); they were removed",
              file=env.stderr)
    progress = _progress(env)
    try:
        try:
            report = run(config, progress=progress, out_dir=folder, started=started)
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
    page, *others = saved_files() + ([".prof files"] if any(p.prof_path for p in report.profiles) else [])
    print(f"kdiag: run saved in {folder}/ ({page}: open it with `kdiag view {shlex.quote(str(folder))}`; "
          f"{', '.join(others)})", file=env.stderr)
    env.stderr.flush()
    if request.format == "terminal" and _is_terminal(env.stdout):
        from kdiag.render.terminal import print_report

        print_report(report, verbose=request.verbose, saved=str(folder))
    elif request.format == "terminal":  # piped: as wide as COLUMNS says, else 80, and no colour
        width = shutil.get_terminal_size((80, 24)).columns
        text = render(report, "terminal", width=width, verbose=request.verbose, saved=str(folder))
        env.stdout.write(_printable(text, env.stdout))
    else:
        text = rendered.get(request.format) or render(report, request.format)
        env.stdout.write(_printable(text, env.stdout))
    return active_stop().exit_status  # a Ctrl-C or SIGTERM during the save waited for it


def _printable(text: str, stream) -> str:
    """Text the stream can encode: a lone surrogate from a non-UTF-8 file name becomes an escape."""
    encoding = getattr(stream, "encoding", None) or "utf-8"
    return text.encode(encoding, errors="backslashreplace").decode(encoding)


def run_bisect(args, argv, env: Env) -> int:
    """`kdiag bisect`: progress on stderr, a line per probe as it ends, then the result."""
    from kdiag.datamodel.versions import BisectRequest
    from kdiag.render import bisect as text
    from kdiag.steps.bisect import BisectInterrupted
    from kdiag.steps.bisect import run as bisect

    request = BisectRequest(args.good, args.bad, args.strategy, args.threshold)
    config = run_config_from(args, BISECT_OPTIONS, custom_objects=_custom_objects(args), command=_command(argv))
    probes_out = env.stdout if args.format == "terminal" else env.stderr

    def ended(result, probe) -> None:
        if len(result.probes) == 1:
            print(text.header(result), file=probes_out)
        print(text.probe_text(result, probe), file=probes_out, flush=True)

    render = text.summary_text if args.format == "terminal" else text.render_json
    progress = _progress(env)
    try:
        try:
            result = bisect(config, request, progress=progress, on_probe=ended)
        finally:
            progress.close()
    except BisectInterrupted as stopped:  # what finished is printed already; the partial result says where it stopped
        env.stdout.write(_printable(render(stopped.result), env.stdout))
        stop = active_stop()
        print(f"kdiag: interrupted ({stop.cause}); the probes that finished are above", file=env.stderr)
        return stop.exit_status or ExitStatus.INTERRUPTED
    print("", file=probes_out)
    env.stdout.write(_printable(render(result), env.stdout))
    return active_stop().exit_status


def run_envs(args, env: Env) -> int:
    """`kdiag envs` (list) and `kdiag envs rm VERSION|--all`."""
    from kdiag.versions.environments import EnvironmentCache, listing, removal

    cache = EnvironmentCache()
    cache.remove_leftovers()
    if args.envs_command != "rm":
        text = listing(cache)
    elif args.all == (args.version is not None):
        raise KdiagError("kdiag envs rm takes a VERSION or --all", "e.g. kdiag envs rm 2.15, or kdiag envs rm --all")
    else:
        text = removal(cache, None if args.all else args.version)
    # Folder names and descriptions in the cache are files: shown with control characters escaped.
    env.stdout.write(_printable(sanitize.terminal(text, multiline=True), env.stdout))
    return ExitStatus.OK


def run_examples(env: Env) -> int:
    from kdiag.engine.intake.examples import all_examples

    for example in all_examples().values():
        print(f"{example.name:14} batch {example.batch_size:<3} {example.description}", file=env.stdout)
    return ExitStatus.OK


def run_compare(args, env: Env) -> int:
    from kdiag.analysis.compare import compare_reports, exit_status
    from kdiag.datamodel.report import read_report
    from kdiag.render.comparison import render as render_comparison

    before, after = read_report(Path(args.before)), read_report(Path(args.after))
    threshold = args.fail_above if args.fail_above is not None else 10.0
    comparison = compare_reports(before, after, threshold, before_label=args.before, after_label=args.after,
                                 allow_missing=args.allow_missing)
    env.stdout.write(render_comparison(comparison))
    return exit_status(comparison) if args.fail_above is not None else ExitStatus.OK


def run_cpp_build(force: bool, env: Env) -> int:
    from kdiag.engine.runtimes import cpp

    binary = cpp.build(force=force)
    print(f"kdiag: C++ baseline built: {binary}", file=env.stdout)
    return ExitStatus.OK


def _progress(env: Env):
    from kdiag.render.terminal import StderrProgress

    return StderrProgress(env.stderr)


def _is_terminal(stream) -> bool:
    return stream is sys.stdout and hasattr(stream, "isatty") and stream.isatty()
