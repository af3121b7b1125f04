"""Text from a model file reaches report.md and the terminal through kdiag.sanitize, whatever it holds.

A model file's name, its input names and the keras_version it records are the user's (or an attacker's)
text. Property tests (hypothesis) use random strings for them and check that report.md keeps the
structure it has with plain names (the same headings, tables, folds and code blocks, parsed by
cmarkgfm as GitHub does), forms no image, link or mention from them, keeps its title on one line, and
that the terminal report prints no control character.
"""

from __future__ import annotations

import dataclasses
import html.parser
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import factories as fx
from kdiag.analysis.diagnose import diagnose
from kdiag.datamodel.report import Report
from kdiag.render import markdown
from kdiag.render.terminal import render as render_terminal

cmarkgfm = pytest.importorskip("cmarkgfm")

#: GitHub's mention filter: "@" then a user name character, outside code.
MENTION = re.compile(r"(?:^|\W)@[A-Za-z0-9]")

hostile = st.lists(st.one_of(
    st.characters(codec="utf-8"),
    st.sampled_from(list("\x1b\x07\x9b\n\r\t\x00\u202e\u2028[]()!@#|*_<>&`\\:./~-+=$^ ")),
    st.sampled_from(["https://x.example", "www.x.example", "@octocat", "![i](https://t.example/p.png)", "#12",
                     "\n# heading\n", "\n| a | b |\n| - | - |\n", "```", "<details>", "</details>", "<img src=x>",
                     "\n---\n", "**", "\ue000", "\ue003"]),
), min_size=1, max_size=12).map("".join)


def report_with(name: str, input_name: str, keras_version: str) -> Report:
    """A user's model file named `name`, an input called `input_name`, saved by `keras_version`."""
    model = fx.model_info(name=name, source=f"/data/models/{name}.h5", format="h5", directory="/data/models",
                          inputs=[fx.InputInfo(input_name, [8, 4], "float32", "uniform [0, 1), seed 0")],
                          keras2_signs=[f"its keras_version attribute is {keras_version!r}"],
                          training_dependent_layers=[f"{input_name} (Dropout)"], training_true_max_abs_diff=0.3)
    report = fx.report(fx.typical_keras3(), model=model, command=f"kdiag inspect /data/models/{name}.h5")
    return dataclasses.replace(report, findings=diagnose(report))


class _Structure(html.parser.HTMLParser):
    """The block structure of rendered Markdown, and the text outside code."""

    BLOCKS = ("h1", "h2", "h3", "h4", "h5", "h6", "table", "tr", "td", "th", "details", "summary", "pre", "ul",
              "ol", "li", "blockquote", "hr")

    def __init__(self, page: str):
        super().__init__(convert_charrefs=True)
        self.blocks = []
        self.tags = []
        self.outside_code = []
        self._code = 0
        self.feed(page)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        if tag in self.BLOCKS:
            self.blocks.append(tag)
        if tag in ("code", "pre"):
            self._code += 1

    def handle_endtag(self, tag):
        if tag in ("code", "pre"):
            self._code -= 1

    def handle_data(self, data):
        if not self._code:
            self.outside_code.append(data)


def structure(text: str) -> _Structure:
    from cmarkgfm.cmark import Options

    return _Structure(cmarkgfm.github_flavored_markdown_to_html(text, options=Options.CMARK_OPT_UNSAFE))


PLAIN = structure(markdown.render(report_with("model", "x", "2.2.4"), redact=False))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=hostile, input_name=hostile, keras_version=hostile)
def test_file_text_never_changes_the_structure_of_report_md(name, input_name, keras_version):
    text = markdown.render(report_with(name, input_name, keras_version), redact=False)
    shown = structure(text)
    assert shown.blocks == PLAIN.blocks  # the same headings, tables, folds, lists and code blocks
    assert not any(tag == "img" for tag, _ in shown.tags)
    assert not any(tag == "a" and "href" in attrs for tag, attrs in shown.tags)
    assert not MENTION.search("".join(shown.outside_code))
    title, blank = text.splitlines()[:2]
    assert title.startswith("# kdiag report: ") and blank == ""  # the title is one line


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=hostile, input_name=hostile, keras_version=hostile)
def test_file_text_never_puts_a_control_character_on_the_terminal(name, input_name, keras_version):
    report = report_with(name, input_name, keras_version)
    for text in (render_terminal(report, width=80), render_terminal(report, width=120, verbose=True)):
        controls = [hex(ord(c)) for c in text if (ord(c) < 0x20 and c != "\n") or 0x7f <= ord(c) <= 0x9f
                    or c in "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u2028\u2029"]
        assert not controls, controls


@pytest.mark.parametrize("name", ["![t](https://attacker.example/pixel.png?who=victim)", "@octocat",
                                  "evil\n# Injected heading\n@octocat [phish](https://x.example)",
                                  "a`b``c", "x | y", "<img src=x onerror=alert(1)>"])
def test_the_hostile_names_of_issue_20_stay_text(name):
    text = markdown.render(report_with(name, name, name), redact=False)
    shown = structure(text)
    assert shown.blocks == PLAIN.blocks
    assert not any(tag in ("img", "a") for tag, _ in shown.tags)
    assert not MENTION.search("".join(shown.outside_code))
