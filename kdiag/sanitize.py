"""Text that came from a model file, made safe for the place it is shown. Standard library only.

Everything a model file (or a report.json, or an --inputs archive) says is hostile: layer and
class names, versions, metadata, file names and the exception texts that quote them. Shown raw, an
ESC sequence retitles the user's terminal, writes their clipboard (OSC 52) or prints a fake
"all checks passed" over kdiag's own line; in report.md, `![x](https://tracker/...)` becomes a
tracking image and `@someone` a notification, in a file written to be pasted into public issues.

One function per destination; call it on each piece of file-derived text as it is placed, never on
kdiag's own markup around it:

- `terminal(text)`: for stderr and stdout. Control characters are shown as Python-style escapes.
  One line by default (`\\n`, `\\r`, `\\t` are shown as escapes too); `multiline=True` keeps
  newline and tab, for a block of text whose lines are all shown.
- `markdown(text)`: for Markdown prose and table cells (GitHub Flavored Markdown). Always one line.
- `code_span(text)`: the text as a Markdown code span; `table_cell=True` inside a GFM table.
- `joined(items)` and `clip(text)`: keep a one-line message one readable line, however many names
  or characters the file holds ("a, b, c and 4,997 more").
- `literal(text)`: file-derived text inside kdiag's own marked-up paragraphs, which each renderer
  then escapes for its format (`render_literals`).

HTML is escaped by the HTML renderer (`html.escape` and its Content-Security-Policy).
"""

from __future__ import annotations

import re
from typing import Callable, Iterable, Optional

# What a terminal acts on rather than shows, besides the C0 set: DEL, the C1 controls (U+009B is a
# one-character CSI on terminals that read UTF-8 as Unicode), the bidirectional overrides and
# isolates that reorder what is shown ("Trojan Source"), line and paragraph separators, and lone
# surrogates (a non-UTF-8 byte in a file name, which no stream can encode).
_BIDI = "\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069"
_ALWAYS = f"\\x00-\\x08\\x0b-\\x1f\\x7f-\\x9f{_BIDI}\u2028\u2029\ud800-\udfff"
_ONE_LINE = re.compile(f"[\\t\\n{_ALWAYS}]")
_MULTILINE = re.compile(f"[{_ALWAYS}]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(match: "re.Match[str]") -> str:
    char = match.group()
    if char in _NAMED:
        return _NAMED[char]
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def terminal(text: str, *, multiline: bool = False) -> str:
    """`text` with every control character shown as an escape: ESC as `\\x1b`, U+009B as `\\x9b`,
    U+202E as `\\u202e`; newline, carriage return and tab as `\\n`, `\\r`, `\\t`.

    The result holds no character below U+0020 (nor DEL, C1, bidirectional controls or lone
    surrogates), so it cannot move the cursor, change colours, set the title or write the clipboard,
    and it is one line. With `multiline=True`, newline and tab are kept as they are (a traceback).
    """
    return (_MULTILINE if multiline else _ONE_LINE).sub(_escape, str(text))


# Every ASCII punctuation character may be backslash-escaped in CommonMark, and is then literal.
# Only the characters that can start or end something are escaped, so that kdiag's own figures
# (1.27 ms, n=24, 2.4x) read as they are in the file: code (`), emphasis and strikethrough (* _ ~),
# links and images ([ ] !), raw HTML and autolinks (< >), entities (&), table cells (|), headings
# and issue references (#), math ($), and the backslash itself. `<`, `>`, `&` and `"` become
# entities instead, which also hold inside an HTML block (<details>), where backslash escapes are
# not read. GitHub links "https://..." and "www...." in plain text as it renders (after parsing), so
# the ":" of "://" and the "." after "www" are escaped: an escape splits the text where the link
# would be matched. A text that starts like a list item or a block ("- ", "+ ", "1. ", "> ") has its
# first mark escaped.
_ENTITIES = {"<": "&lt;", ">": "&gt;", "&": "&amp;", '"': "&quot;"}
_PUNCTUATION = re.compile(r"""[\\`*_~\[\]!<>&"|#$@]|:(?=//)|(?<=[Ww]{3})\.|^[-+=]""")
# "1. " or "12) " at the start: an ordered list item.
_ORDERED = re.compile(r"^(\d{1,9})([.)])(?=[ \t]|$)")
# GitHub turns "@name" into a mention and "a@b.co" into a mailto link after the Markdown is parsed,
# so a backslash cannot stop them. A WORD JOINER (U+2060, invisible, zero width) after the "@"
# breaks both patterns, and the text still reads "@name". The same after "#": "#12" would link to
# an issue of the repository the report is pasted in.
_AT = "@\u2060"


def _markdown_escape(match: "re.Match[str]") -> str:
    char = match.group()
    if char == "@":
        return _AT
    if char == "#":
        return "\\#\u2060"
    return _ENTITIES.get(char) or "\\" + char


def markdown(text: str) -> str:
    """`text` as literal Markdown inline text on one line: it renders as the same characters, and
    forms no link, autolink, image, mention, issue reference, emphasis, heading, list, table cell
    or HTML tag.

    Control characters (newlines included) are first shown as escapes, as `terminal` does; then
    the characters that could start any of those are backslash-escaped (`<`, `>`, `&`, `"` as
    entities), and a word joiner follows each `@` and `#`.
    """
    return _ORDERED.sub(r"\1\\\2", _PUNCTUATION.sub(_markdown_escape, terminal(text)))


_BACKTICKS = re.compile(r"`+")


def code_span(text: str, *, table_cell: bool = False) -> str:
    """`text` as one Markdown code span: shown verbatim, in a fence one backtick longer than the longest
    run of backticks inside it, on one line (control characters shown as escapes, as `terminal`).

    A space pads each side when the text starts or ends with a backtick or a space (CommonMark
    strips one on each side). Empty text is shown as one space: Markdown has no empty code span. `table_cell=True`: `|` is written `\\|`, since a GFM table splits cells
    on it even inside a code span (and shows `\\|` there as `|`).
    """
    body = terminal(text)
    if table_cell:
        body = body.replace("|", "\\|")
    longest = max((len(run) for run in _BACKTICKS.findall(body)), default=0)
    fence = "`" * (longest + 1)
    if not body.strip(" "):  # all spaces (or nothing): CommonMark keeps them as they are
        return f"{fence}{body or ' '}{fence}"
    if body[0] in "` " or body[-1] in "` ":
        body = f" {body} "
    return f"{fence}{body}{fence}"


# File-derived text inside kdiag's own marked-up paragraphs (kdiag.views.sections: **strong** and
# `code` marks, which the terminal drops and Markdown and HTML render): `literal(text)` fences it
# with private-use characters, so that each renderer escapes it for its format (`markdown`,
# `code_span`, html.escape) instead of reading marks in it. `literal(text, code=True)` asks for it
# shown as code. The fences are stripped from the text first, so a file cannot forge one.
_LITERAL = ("\ue000", "\ue001")
_LITERAL_CODE = ("\ue002", "\ue003")
_FENCES = re.compile("[\ue000-\ue003]")
_LITERALS = re.compile("\ue000([^\ue000-\ue003]*)\ue001|\ue002([^\ue000-\ue003]*)\ue003")


def literal(text: object, *, code: bool = False) -> str:
    """`text` marked as file-derived inside a paragraph of kdiag's (see `render_literals`)."""
    start, end = _LITERAL_CODE if code else _LITERAL
    return start + _FENCES.sub("", str(text)) + end


def render_literals(text: str, own: Callable[[str], str], plain: Callable[[str], str],
                    code: Callable[[str], str]) -> str:
    """A paragraph of kdiag's for one format: `own(text)` renders kdiag's text (its marks included) with
    every literal replaced by a placeholder that holds no mark character; then each placeholder becomes
    `plain(literal)` or `code(literal)`. A stray fence character from a file is dropped."""
    found = []

    def hold(match: "re.Match[str]") -> str:
        found.append((match.group(1), match.group(2)))
        return f"\ue004{len(found) - 1}\ue005"

    held = _FENCES.sub("", _LITERALS.sub(hold, text))
    rendered = own(held)

    def back(match: "re.Match[str]") -> str:
        text_part, code_part = found[int(match.group(1))]
        return plain(text_part) if text_part is not None else code(code_part)

    return re.sub("\ue004(\\d+)\ue005", back, rendered)


def joined(items: Iterable[object], *, limit: int = 3, each: int = 80, total: Optional[int] = None) -> str:
    """Up to `limit` items, each clipped to `each` characters, joined as a sentence:
    "a, b and c", "a, b, c and 4,997 more". Items are shown as given (quote them first).
    `total`: how many there are, when `items` holds only the first few."""
    shown, count = [], 0
    for item in items:
        count += 1
        if len(shown) < limit:
            shown.append(clip(str(item), each))
    count = max(count, total or 0)
    if count > len(shown):
        return ", ".join(shown) + f" and {count - len(shown):,} more"
    if len(shown) <= 1:
        return "".join(shown)
    return ", ".join(shown[:-1]) + " and " + shown[-1]


def clip(text: str, limit: int) -> str:
    """`text` cut to `limit` characters, saying how many more there were."""
    text = str(text)
    if len(text) <= limit:
        return text
    return text[:limit] + f"… ({len(text) - limit:,} more characters)"
