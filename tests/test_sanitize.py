"""kdiag.sanitize: file-derived text made safe for the terminal and for Markdown.

Checked directly, with hostile strings written out and with hypothesis; Markdown is rendered by
cmarkgfm (GitHub's own renderer, with its autolink extension) to see what a reader of report.md
would get.
"""

from __future__ import annotations

import html
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kdiag import sanitize

cmarkgfm = pytest.importorskip("cmarkgfm")

# What a model file can hold in a name: escape sequences that set the title, write the clipboard,
# erase the line and print fake green text; bidi overrides; a one-character CSI (U+009B).
HOSTILE = [
    "\x1b]0;pwned\x07",
    "\x1b]52;c;ZWNobyBwd25lZA==\x07",
    "\r\x1b[2K\x1b[32mkdiag: all checks passed\x1b[0m",
    "\x9b31mred",
    "evil\u202egnp.exe",
    "nul\x00bell\x07del\x7f",
    "two\nlines\ttab",
    "lone \udcff surrogate",
]
# What Markdown would turn into links, images, mentions and structure.
MARKUP = [
    "![t](https://attacker.example/pixel.png?who=victim)",
    "[click](javascript:alert(1))",
    "@octocat please look",
    "mail me: victim@example.com",
    "https://attacker.example/phish",
    "www.attacker.example",
    "<img src=x onerror=alert(1)>",
    "# heading\n## another",
    "a | b | c",
    "*bold* _it_ ~~gone~~ `code`",
    "&lt;script&gt;",
    "1. list",
    "[^1]: footnote",
    "<https://attacker.example>",
    "$x^2$",
    "see #12 and GH-3", "www.evil.example/x", "- item", "+ item", "12) twelve", "> quote", "=== ", "~~gone~~",
]

# Hypothesis: any text, hostile characters and Markdown punctuation much more often than chance.
text = st.lists(st.one_of(
    st.characters(codec=None),
    st.sampled_from(list("\x1b\x07\x9b\n\r\t\x00\u202e\u2028[]()!@#|*_<>&`\\:./~-+=$^ ")),
    st.sampled_from(["https://", "www.", "@octocat", "a@b.co", "](", "![", "javascript:", "<img ", "```"]),
), max_size=30).map("".join)


def _controls(value: str, allowed: str = "") -> list:
    return [c for c in value if (ord(c) < 0x20 and c not in allowed) or 0x7f <= ord(c) <= 0x9f
            or c in "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c\u2028\u2029"]


@pytest.mark.parametrize("hostile", HOSTILE)
def test_terminal_shows_control_characters_as_escapes(hostile):
    shown = sanitize.terminal(hostile)
    assert _controls(shown) == [] and "\x1b" not in shown
    assert "\n" not in shown
    shown.encode("utf-8")  # a lone surrogate is escaped too, so any stream can take the line


def test_terminal_names_the_escapes():
    assert sanitize.terminal("a\x1b[31mb") == "a\\x1b[31mb"
    assert sanitize.terminal("a\nb\tc\rd") == "a\\nb\\tc\\rd"
    assert sanitize.terminal("\x9b\u202e") == "\\x9b\\u202e"
    assert sanitize.terminal("a\nb\tc\x1b", multiline=True) == "a\nb\tc\\x1b"
    assert sanitize.terminal("plain name_1.keras") == "plain name_1.keras"


@settings(max_examples=300, deadline=None)
@given(text)
def test_terminal_output_holds_no_control_character(value):
    one_line = sanitize.terminal(value)
    assert _controls(one_line) == []
    block = sanitize.terminal(value, multiline=True)
    assert _controls(block, allowed="\n\t") == []
    one_line.encode("utf-8")


def _render(markdown_text: str) -> str:
    from cmarkgfm.cmark import Options

    # UNSAFE: raw HTML is passed through, so a tag the text managed to form would show up.
    return cmarkgfm.github_flavored_markdown_to_html(markdown_text, options=Options.CMARK_OPT_UNSAFE)


# GitHub's mention filter: "@" then a user name character, outside code (its html-pipeline regex).
MENTION = re.compile(r"(?:^|\W)@[A-Za-z0-9]")
EMAIL = re.compile(r"[A-Za-z0-9._+-]@[A-Za-z0-9]")


def _assert_inert_paragraph(rendered: str, expected_text: str) -> None:
    assert rendered.startswith("<p>") and rendered.endswith("</p>\n"), rendered
    inner = rendered[len("<p>"):-len("</p>\n")]
    assert "<" not in inner, rendered  # no tag at all: no <a>, <img>, <em>, <code>, <del>...
    shown = html.unescape(inner)
    assert not MENTION.search(shown) and not EMAIL.search(shown), shown
    assert shown.replace("@\u2060", "@").replace("#\u2060", "#") == expected_text


@pytest.mark.parametrize("value", MARKUP + HOSTILE)
def test_markdown_renders_as_the_same_characters_and_nothing_else(value):
    _assert_inert_paragraph(_render(f"x {sanitize.markdown(value)} x"), f"x {sanitize.terminal(value)} x")


def test_markdown_leaves_kdiag_s_own_figures_as_they_are():
    """Only what could start something is escaped: a figure reads the same in the raw file."""
    assert sanitize.markdown("predict: median 41 ms (IQR 6.4 ms, n=24), 2.4x faster; 1,000 calls.") == \
        "predict: median 41 ms (IQR 6.4 ms, n=24), 2.4x faster; 1,000 calls."


@pytest.mark.parametrize("value", ["#12", "see #12", "a@b.co"])
def test_issue_references_and_emails_get_a_word_joiner(value):
    escaped = sanitize.markdown(value)
    assert "\u2060" in escaped and escaped.replace("\u2060", "").replace("\\", "") == value


@settings(max_examples=300, deadline=None)
@given(text)
def test_markdown_never_forms_a_link_image_mention_or_tag(value):
    escaped = sanitize.markdown(value)
    assert "\n" not in escaped and _controls(escaped) == []
    _assert_inert_paragraph(_render(f"x {escaped} x"), f"x {sanitize.terminal(value)} x")


@settings(max_examples=200, deadline=None)
@given(text)
def test_markdown_in_a_table_cell_keeps_the_table_shape(value):
    rendered = _render(f"| a | b |\n| --- | --- |\n| {sanitize.markdown(value)} | z |\n")
    assert rendered.count("<td>") == 2 and "<a " not in rendered and "<img" not in rendered, rendered


@pytest.mark.parametrize("value", ["plain", "a`b", "``x``", "`start", "end`", " spaced ", "   ", "",
                                   "a | b", "line\nbreak", "\x1b[2K"])
def test_code_span_shows_the_text_verbatim(value):
    rendered = _render(f"x {sanitize.code_span(value)} x")
    match = re.fullmatch(r"<p>x <code>(.*)</code> x</p>\n", rendered, re.S)
    assert match, rendered
    assert html.unescape(match.group(1)) == (sanitize.terminal(value) or " ")


@settings(max_examples=300, deadline=None)
@given(text)
def test_code_span_is_one_span_whatever_the_text(value):
    span = sanitize.code_span(value)
    assert "\n" not in span and _controls(span) == []
    rendered = _render(f"x {span} x")
    match = re.fullmatch(r"<p>x <code>(.*)</code> x</p>\n", rendered, re.S)
    assert match, rendered
    assert html.unescape(match.group(1)) == (sanitize.terminal(value) or " ")
    cell = _render(f"| a | b |\n| --- | --- |\n| {sanitize.code_span(value, table_cell=True)} | z |\n")
    assert cell.count("<td>") == 2, cell


def test_joined_caps_long_lists():
    assert sanitize.joined([]) == ""
    assert sanitize.joined(["a"]) == "a"
    assert sanitize.joined(["a", "b"]) == "a and b"
    assert sanitize.joined(["a", "b", "c"]) == "a, b and c"
    assert sanitize.joined(f"n{i}" for i in range(5000)) == "n0, n1, n2 and 4,997 more"
    assert sanitize.joined(["x" * 500], each=10) == "xxxxxxxxxx… (490 more characters)"
    assert sanitize.joined(["a", "b", "c"], total=5000) == "a, b, c and 4,997 more"


def test_the_module_imports_only_the_standard_library():
    import subprocess
    import sys

    code = "import sys, kdiag.sanitize; print(sorted(m for m in sys.modules if m.split('.')[0] in " \
           "('numpy', 'tensorflow', 'rich', 'keras')))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "[]"
