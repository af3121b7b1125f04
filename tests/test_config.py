"""RunConfig is the one list of `kdiag inspect`'s options: the CLI, `kdiag.inspect()` and a child run's
arguments (`--keras 2|both`) all come from it, and these tests hold them to it field by field."""

from __future__ import annotations

import dataclasses
import inspect as pyinspect
from pathlib import Path

import numpy as np
import pytest

from kdiag import api
from kdiag.cli import build_parser, request_from_args
from kdiag.datamodel.config import RunConfig, options
from kdiag.engine import keras_child

#: Fields with no command-line option, and why: a child loads the custom objects from their module
#: file (custom_objects_file, an option) and records its own command line.
NOT_OPTIONS = {"custom_objects", "command"}


def _every_field_changed(tmp_path: Path) -> RunConfig:
    """A config in which every option differs from its default (so to_argv must spell each one)."""
    module = tmp_path / "layers.py"
    module.write_text("class Scale:\n    pass\n", encoding="utf-8")
    (tmp_path / "model.h5").write_bytes(b"")
    changed = dict(
        model=str(tmp_path / "model.h5"), inputs=np.zeros((4, 3), "float32"), batch_size=4,
        input_shapes={"tokens": (8, 2)}, strategies=("predict", "concrete"), budget_s=0.25, min_calls=7,
        max_wall_s=3.5, precision=0.05, unsafe=True,
        cpp=True, profile=False, profile_strategies=("tf-function",), profile_calls=3,
        time_limit_s=42.0, redact=False, keras="both", custom_objects_file=str(module), samples=(256, 4096),
        memory_loops=True, ops=False, custom_objects={"Scale": object}, command="kdiag inspect model.h5",
        save_inputs=str(tmp_path / "batch.npz"),
    )
    # The sweeps stay on: --samples sets their sample counts, and RunConfig refuses both at once. --tf
    # cannot be combined with --keras or --cpp: test_tf_versions_survive_to_argv covers it.
    unchanged = {"example", "sweeps", "tf_versions"}
    assert set(changed) | unchanged == {f.name for f in dataclasses.fields(RunConfig)}, "a new field: add it here"
    return RunConfig(**changed)


def test_every_option_survives_to_argv_and_the_child_s_parsing(tmp_path):
    config = _every_field_changed(tmp_path)
    argv = keras_child.child_arguments(config, "2", tmp_path / "out", tmp_path)
    parsed = request_from_args(build_parser().parse_args(argv), argv)
    child = parsed.config
    for field in dataclasses.fields(RunConfig):
        mine, theirs = getattr(config, field.name), getattr(child, field.name)
        if field.name == "inputs":  # the arrays travel as a file the child reads
            assert np.array_equal(np.load(theirs), mine)
        elif field.name == "keras":  # the child runs one side
            assert theirs == "2"
        elif field.name == "custom_objects":  # loaded again, by the child, from the same module file
            assert set(theirs) == set(mine)
        elif field.name == "command":  # the child's own command line
            assert theirs.startswith("kdiag inspect ")
        else:
            assert theirs == mine, field.name
    assert (parsed.format, parsed.out) == ("json", str(tmp_path / "out"))


def test_tf_versions_survive_to_argv_and_the_child_s_parsing(tmp_path):
    (tmp_path / "model.h5").write_bytes(b"")
    config = RunConfig(model=str(tmp_path / "model.h5"), tf_versions=("2.15", "installed", "nightly"),
                       save_inputs=str(tmp_path / "batch.npz"), budget_s=0.5)
    argv = keras_child.child_config(config, tmp_path).to_argv()
    assert argv[argv.index("--tf") + 1] == "2.15,installed,nightly"
    child = request_from_args(build_parser().parse_args(argv), argv).config
    assert (child.tf_versions, child.save_inputs, child.budget_s) == (config.tf_versions, config.save_inputs, 0.5)


@pytest.mark.parametrize("flag, field, value", [("--no-sweeps", "sweeps", False), ("--no-ops", "ops", False),
                                                ("--memory-loop", "memory_loops", True), ("--ops", "ops", True)])
def test_the_steps_turned_on_or_off_stay_so_in_the_child(tmp_path, flag, field, value):
    config = RunConfig(example="tiny", keras="both", **{field: value})
    argv = keras_child.child_arguments(config, "2", tmp_path / "out", tmp_path)
    assert flag in argv
    assert getattr(request_from_args(build_parser().parse_args(argv), argv).config, field) is value


def test_ops_left_unsaid_is_decided_by_the_run_and_the_memory_loop_is_off():
    config = request_from_args(build_parser().parse_args(["inspect", "--example", "tiny"]), []).config
    assert config.ops is None and config.memory_loops is False and config.precision == 0.02


def test_the_cli_offers_every_option_and_nothing_else(capsys):
    flags = {option.flag for _, option in options() if option.flag}
    flags |= {"--no-" + option.flag[2:] for _, option in options() if option.kind == "both"}
    inspect_parser = build_parser()._subparsers._group_actions[0].choices["inspect"]
    offered = {s for action in inspect_parser._actions for s in action.option_strings}
    cli_only = {"-h", "--help", "--format", "--verbose", "--out", "--debug"}
    assert offered - cli_only == flags
    assert {f.name for f, _ in options()} | NOT_OPTIONS == {f.name for f in dataclasses.fields(RunConfig)}


def test_kdiag_inspect_takes_every_option_by_its_field_name():
    parameters = set(pyinspect.signature(api.inspect).parameters)
    # The API's own: the model as its first argument, where to keep the .prof files, a progress callback.
    api_only = {"model_or_path", "out_dir", "progress", "tf"}
    renamed = {"model_or_path": "model", "tf": "tf_versions"}
    # Not asked of a Python caller: custom_objects holds the objects themselves, and there is no command line.
    not_asked = {"custom_objects_file", "command"}
    fields = {f.name for f in dataclasses.fields(RunConfig)}
    assert (parameters - api_only) | {renamed[p] for p in api_only & renamed.keys()} == fields - not_asked
    for name, parameter in pyinspect.signature(api.inspect).parameters.items():
        field = renamed.get(name, name)
        if field in fields and parameter.default is not pyinspect.Parameter.empty:
            default = next(f for f in dataclasses.fields(RunConfig) if f.name == field)
            expected = default.default_factory() if default.default_factory is not dataclasses.MISSING else default.default
            assert parameter.default == expected or (parameter.default is None and expected in ({}, ())), name
