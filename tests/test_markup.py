"""User-controlled text never drives rich: file names, layer names and error messages with
markup or control characters render as themselves, in the report and in the progress lines."""

from __future__ import annotations

import dataclasses
import io

from hypothesis import given, settings
from hypothesis import strategies as st

import factories as fx
from kdiag.analysis.diagnose import diagnose
from kdiag.datamodel.progress import ProgressUpdate
from kdiag.render.terminal import StderrProgress, render, visible

MARKUP = ["[", "]", "[/", "[/x]", "[bold]", "[link=https://example.com]x[/link]", "[/]", "\\[", "[red on",
          "\x1b[31m", "\x07", "\r", "\t"]
hostile_text = st.lists(st.sampled_from(MARKUP) | st.text(min_size=0, max_size=4), min_size=1, max_size=6).map("".join)


def _hostile_report(name: str, layer: str, message: str):
    strategies = fx.typical_keras3()
    strategies[-1] = fx.strategy("TFLite", available=False, reason=f"failed to prepare: ValueError: {message}")
    model = fx.model_info(name=name, source=f"/downloads/{name}.keras",
                          training_dependent_layers=[f"{layer} (Dropout)"], training_true_max_abs_diff=0.5)
    report = fx.report(strategies, model=model, notes=[f"warning: {message}"])
    return dataclasses.replace(report, findings=diagnose(report))


@settings(max_examples=25, deadline=None)
@given(name=hostile_text, layer=hostile_text, message=hostile_text)
def test_terminal_report_renders_hostile_names_as_text(name, layer, message):
    text = render(_hostile_report(name, layer, message), width=80)
    assert "\x1b" not in text  # no escape sequence reaches the terminal (colour is off here)
    assert "\x07" not in text
    shown = "".join(visible(name).split())[:10]  # control characters appear as \x1b, \x07, ...
    if shown:
        assert shown in "".join(text.split()), (name, text[:300])


@settings(max_examples=25, deadline=None)
@given(detail=hostile_text)
def test_progress_lines_render_hostile_file_names_as_text(detail):
    stream = io.StringIO()
    progress = StderrProgress(stream)
    progress(ProgressUpdate(1, 9, "load", detail, 0.0, None))
    progress.close()
    line = stream.getvalue()
    assert line.startswith("kdiag: [   0.0 s] [1/9] load: ")
    assert "\x1b" not in line


def test_a_file_named_with_closing_markup_is_shown_as_named():
    report = _hostile_report("a[/x]", "dense[bold]", "bad [/] value")
    text = render(report, width=100, verbose=True)  # verbose: the model section names the layers
    assert "a[/x]" in text and "dense[bold]" in text and "bad [/] value" in text
