"""report.html: the run as one self-contained page with charts, to look at instead of read.

It lays out the sections of kdiag.views.sections, every one report.md shows, with a chart where a
chart reads better (kdiag.render.charts): first the classification, the verdict, the environment,
current against expected behaviour and the findings with copyable snippets; then the strategies
(medians as dots with IQR whiskers), the latency distribution, the phases before and after
compile(), predict's profile (an icicle with a tooltip on every box, the call tree folded), the
steps beyond one batch, the environment and model, the top functions, how to reproduce (repro.py
folded) and the .prof files. A chart that cannot be drawn is left out; its table has the figures.
The page itself is a template file (render/templates/report.html, with its CSS and script beside it).

The page needs no network, no CDN and no script library: the charts are inline SVG, and a
Content-Security-Policy in the page forbids any fetch and lets only its own small script run.
Everything from the Report is escaped: model names, file paths and snippets are the user's (or a
downloaded file's) text.
"""

from __future__ import annotations

import base64
import hashlib
import html
import re
import shlex
import string
from pathlib import Path
from typing import Callable, List, Optional

from kdiag.datamodel.profile import OTHER, CallNode, ProfileResult
from kdiag import sanitize
from kdiag.datamodel.report import FINDING_KINDS, Finding, Report
from kdiag.datamodel.strategies import PREDICT
from kdiag.render import repro
from kdiag.render.charts import (BEYOND_CHARTS, ICICLE_MAX_DEPTH, PHASE_COLOURS, UNKNOWN_PHASE_COLOUR,  # noqa: F401
                                 Charts, note)
from kdiag.render.charts import distribution_chart as _distribution_chart
from kdiag.render.charts import icicle_chart as _icicle_chart
from kdiag.render.charts import phase_chart as _phase_chart
from kdiag.render.charts import strategy_chart as _strategy_chart
from kdiag.version import __version__
from kdiag.views import facts, sections, wording
from kdiag.views.sections import Cell, Section, Table

TEMPLATES = Path(__file__).with_name("templates")
#: A call tree node opens by default while it holds at least this share of the profile: the hot path.
OPEN_SHARE = 0.15


def render(report: Report) -> str:
    """The whole page, as a string."""
    charts = Charts()
    parts = [_verdict(report), _findings(report), _generic(sections.side_by_side(report)),
             _strategies(report, charts), _distribution(report, charts), _phases(report, charts),
             _generic(sections.tracing(report)), _profile(report, charts), _beyond(report, charts),
             _environment(report), _generic(sections.top_functions(report), folded=True),
             _generic(sections.reproduce(report)), _standalone_repro(report), _generic(sections.profile_files(report))]
    title = f"kdiag report: {report.model.name}"
    script = _template_text("report.js")
    return string.Template(_template_text("report.html")).substitute(
        csp=_content_security_policy(script), title=e(title), style=_template_text("report.css"), h1=e(title),
        body="\n".join(part for part in parts if part),
        footer=e(f"kdiag {__version__} · {report.settings.timestamp}"), script=script)


def e(value: object) -> str:
    """Text for HTML, attribute values included."""
    return html.escape(str(value), quote=True)


def _template_text(name: str) -> str:
    return (TEMPLATES / name).read_text(encoding="utf-8")


def _prose(text: str) -> str:
    """A paragraph of kdiag's: escaped, its **strong** and `code` marks made <strong> and <code>, the
    file-derived literals in it escaped and never read as marks."""
    def own(held: str) -> str:
        escaped = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", e(held))
        return re.sub(r"`([^`]+)`", r"<code>\1</code>", escaped)

    return sanitize.render_literals(" ".join(text.split()), own, e, lambda code: f"<code>{e(code)}</code>")


def _plain(text: str) -> str:
    """Plain text (a finding, a note, a bullet): escaped whole."""
    return e(" ".join(text.split()))


# --- laying out a section ---------------------------------------------------------------------


def _table(table: Table) -> str:
    head = "".join(f"<th>{e(c.header)}</th>" for c in table.columns)
    body = "".join("<tr>" + "".join(_cell(cell, column.align) for cell, column in zip(row, table.columns)) + "</tr>"
                   for row in table.rows)
    caption = f'<p class="meta">{_prose(table.caption)}</p>' if table.caption else ""
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>{caption}"


def _cell(cell: Cell, align: str) -> str:
    classes = " ".join(c for c in ("num" if align == "r" else "", cell.tone if cell.tone in ("good", "bad", "muted")
                                   else "") if c)
    text = f"<code>{e(cell.text)}</code>" if cell.code else e(cell.text + (" ~" if cell.tone == "noisy" else ""))
    text += f" {e(cell.suffix)}" if cell.suffix else ""
    return f'<td class="{classes}">{text}</td>' if classes else f"<td>{text}</td>"


def _body(section: Section, chart: str = "", level: int = 2,
          chart_for: Optional[Callable[[Section], str]] = None) -> List[str]:
    parts = [f"<h{level}>{e(section.title)}</h{level}>"] if section.title else []
    parts.append(chart)
    parts += [f'<p class="meta">{_prose(p)}</p>' for p in section.paragraphs]
    parts += [_table(t) for t in section.tables]
    parts += [f"<p>{_prose(p)}</p>" for p in section.after]
    if section.bullets:
        parts.append('<ul class="notes">' + "".join(f"<li>{_plain(b)}</li>" for b in section.bullets) + "</ul>")
    parts += [_code_block(code.text, code.language) for code in section.code]
    for sub in section.subsections:
        inner = _body(sub, chart_for(sub) if chart_for else "", min(level + 1, 4), chart_for)
        parts.append(f'<div class="sub" id="{e(sub.key)}">' + "\n".join(p for p in inner if p) + "</div>")
    return parts


def _generic(section: Optional[Section], chart: str = "", folded: bool = False,
             chart_for: Optional[Callable[[Section], str]] = None) -> str:
    if section is None:
        return ""
    inner = "\n".join(p for p in _body(section, chart, chart_for=chart_for) if p)
    if folded:
        heading, _, rest = inner.partition("\n")
        inner = f"{heading}\n<details><summary>{e(section.title)}</summary>\n{rest}\n</details>"
    return f'<section id="{e(section.key)}">\n{inner}\n</section>'


def _code_block(text: str, language: str) -> str:
    return (f'<div class="code"><button type="button" class="copy">copy</button>'
            f'<pre><code class="language-{e(language)}">{e(text)}</code></pre></div>')


# --- sections with charts, and the page's own -------------------------------------------------------


def _verdict(report: Report) -> str:
    """What the page answers first: the classification, the verdict, the environment in one line,
    current against expected behaviour, and the short repro (folded)."""
    label, _, rest = wording.classification(report).partition(": ")
    parts = [f'<section id="verdict"><p class="classification"><strong>{e(label)}:</strong> {_plain(rest)}</p>',
             f'<p class="verdict">{_prose(wording.verdict_text(report))}</p>']
    if report.incomplete:
        parts.append(f'<p class="warn">{_prose(wording.INCOMPLETE.replace(": ", ":** ", 1).join(["**", ""]))}</p>')
    parts += [f"<p><strong>Environment:</strong> {_plain(wording.environment_line(report))}</p>",
              f"<p><strong>Current behaviour:</strong> {_prose(wording.current_behaviour(report))}</p>",
              f"<p><strong>Expected behaviour:</strong> {_prose(wording.expected_behaviour(report))}</p>",
              f'<p class="meta">{e(wording.run_summary(report))} Command: <code>{e(report.settings.command)}'
              "</code></p>"]
    script = repro.short_script(report)
    if script is not None:
        parts.append(f"<details><summary>Reproduce with TensorFlow alone ({len(script.splitlines())} lines; "
                     f"{repro.FILE_NAME} in the run folder says whether it reproduced)</summary>"
                     f"{_code_block(script, 'python')}</details>")
    parts.append("</section>")
    return "\n".join(parts)


def _environment(report: Report) -> str:
    tables = "".join(f"<h3>{e(s.title)}</h3>{_table(s.tables[0])}"
                     for s in (sections.environment(report), sections.model(report)))
    return (f'<section id="environment"><h2>Environment and model</h2><details><summary>The fields of '
            f"TensorFlow's issue template, and the model</summary>{tables}</details></section>")


def _strategies(report: Report, charts: Charts) -> str:
    section = sections.strategies(report)
    chart = ""
    if section.tables:
        rows = len(facts.strategy_rows(report))
        chart = charts.draw("strategies: median per call", 0.42 * rows + 1.0, _strategy_chart, report)
    return _generic(section, chart)


def _distribution(report: Report, charts: Charts) -> str:
    measured = [r.result for r in facts.strategy_rows(report) if facts.median(r.result) is not None]
    if not measured:
        return ""
    chart = charts.draw("latency distribution per strategy", 0.42 * len(measured) + 1.1, _distribution_chart,
                        measured)
    return ('<section id="distribution"><h2>Latency distribution</h2>'
            "<p class=\"meta\">Every timed call, warm; the first call of each strategy (tracing, graph building, "
            "caches) is drawn apart as a red x and is not among the samples.</p>" + chart + "</section>")


def _phases(report: Report, charts: Charts) -> str:
    section = sections.phases(report)
    if section is None:
        return ""
    pair = [p for p in (report.profile(PREDICT.name), report.profile("predict (compiled)")) if p is not None]
    profiles = pair or list(report.profiles)
    height = 0.55 * len(profiles) + 1.6
    if facts.compile_phase_deltas(report):
        height = max(height, 0.3 * 9 + 0.8)
    return _generic(section, charts.draw("phases per call", height, _phase_chart, report, profiles))


def _beyond(report: Report, charts: Charts) -> str:
    def chart_for(sub: Section) -> str:
        if sub.key not in BEYOND_CHARTS or not sub.tables:
            return ""
        field, draw, height = BEYOND_CHARTS[sub.key]
        part = getattr(report, field)
        rows = len(getattr(part, "ops", ()) or ())
        return charts.draw(sub.title, height * rows + 1.0 if sub.key == "ops" else height, draw, part)

    return _generic(sections.beyond_one_batch(report), chart_for=chart_for)


def _findings(report: Report) -> str:
    parts = ['<section id="findings"><h2>Findings, in the order to act on them</h2>']
    if not report.findings:
        parts.append(f"<p>{e(wording.NO_FINDINGS)}</p>")
    headings = dict(FINDING_KINDS)
    kind = None
    shown = {}  # snippet -> the finding that showed it: each snippet once
    for number, finding in enumerate(report.findings, 1):
        if finding.kind != kind and finding.kind in headings:
            kind = finding.kind
            parts.append(f'<h3 class="kind">{e(headings[kind])}</h3>')
        parts.append(_finding(number, finding, shown.get(finding.snippet)))
        shown.setdefault(finding.snippet, number)
    parts.append("</section>")
    return "\n".join(parts)


def _finding(number: int, finding: Finding, shown_in: Optional[int] = None) -> str:
    meta = f'<span class="sev sev-{e(finding.severity)}">{e(finding.severity)}</span> <code>{e(finding.id)}</code>'
    if wording.finding_meta(finding):
        meta += " · " + e(wording.finding_meta(finding))
    evidence = "".join(f"<li>{_plain(line)}</li>" for line in finding.evidence)
    parts = [f'<article class="finding" id="finding-{number}"><h4>{number}. {_plain(finding.title)}</h4>',
             f'<p class="meta">{meta}</p>', f"<p><strong>What to do:</strong> {_plain(finding.advice)}</p>",
             f"<details><summary>Evidence ({len(finding.evidence)})</summary><ul>{evidence}</ul></details>"
             if evidence else ""]
    if finding.snippet and shown_in is not None:
        parts.append(f'<p>The code: as in <a href="#finding-{shown_in}">finding {shown_in}</a> above.</p>')
    elif finding.snippet:
        parts.append(_code_block(finding.snippet, sections.snippet_language(finding.strategy)))
    parts.append("</article>")
    return "".join(parts)


def _standalone_repro(report: Report) -> str:
    script = repro.render(report) if repro.unavailable_reason(report) is None else None
    section = sections.standalone_repro(report, None, repro.FILE_NAME)
    folded = (f"<details><summary>standalone code to reproduce ({repro.FILE_NAME})</summary>"
              f"{_code_block(script, 'python')}</details>" if script else "")
    return _generic(section).replace("\n</section>", f"\n{folded}\n</section>")


# --- the profile: icicle and call tree ------------------------------------------------------


def profile_tree(profile: ProfileResult):
    """The call tree to draw, and whether it is the real one. Reports saved before call trees
    get phases -> their top functions (own time) instead, built from what the Report holds."""
    if profile.call_tree is not None:
        return profile.call_tree, True
    total_s = profile.profiled_per_call_s * profile.calls
    phases = []
    for row in profile.phases:
        if row.share <= 0:
            continue
        tops = sorted((f for f in profile.top_functions if f.phase == row.name), key=lambda f: -f.own_s)
        children = [CallNode(f.qualname, f.file, f.line, row.name, f.own_s, f.own_s) for f in tops]
        seconds = row.share * total_s
        phases.append(CallNode(row.name, "", 0, row.name, seconds,
                               max(0.0, seconds - sum(c.total_s for c in children)), children))
    phases.sort(key=lambda n: -n.total_s)
    return CallNode("all profiled calls", "", 0, OTHER, total_s, 0.0, phases), False


def _tree_html(node: CallNode, root_total: float, calls: int, depth: int = 0) -> str:
    share = node.total_s / root_total if root_total else 0.0
    colour = PHASE_COLOURS.get(node.phase, UNKNOWN_PHASE_COLOUR)
    where = "built-in" if node.file == "~" else (f"{node.file}:{node.line}" if node.file else "")
    line = (f'<span class="sw" style="background:{colour}" title="{e(node.phase)}"></span>'
            f'<span class="fn">{e(node.function)}</span> '
            f'<span class="ms">{node.total_s * 1e3 / max(1, calls):.3g} ms</span> '
            f'<span class="pc">{share:.1%}</span> '
            f'<span class="own">own {node.own_s * 1e3 / max(1, calls):.3g} ms · {e(node.phase)}</span>'
            + (f' <span class="where">{e(where)}</span>' if where else ""))
    if not node.children:
        return f'<div class="leaf">{line}</div>'
    opened = " open" if share >= OPEN_SHARE and depth < 60 else ""
    inner = "".join(_tree_html(child, root_total, calls, depth + 1) for child in node.children)
    return f"<details{opened}><summary>{line}</summary>{inner}</details>"


def _profile(report: Report, charts: Charts) -> str:
    main = report.profile(PREDICT.name) or (report.profiles[0] if report.profiles else None)
    if main is None:
        return ""
    tree, real = profile_tree(main)
    parts = [f'<section id="profile"><h2>The profile: {e(main.scenario)}, {main.calls} warm calls</h2>']
    if real:
        parts.append("<p class=\"meta\">The call tree of the warm calls, as cProfile saw them, its largest paths "
                     "(nodes under 0.2% of the time are left out). cProfile keeps caller-to-callee edges, not "
                     "stacks, so a function called from several places has its time split in proportion to its "
                     "callers' edges. Colours are the phases, as in the phase bars.</p>")
    else:
        parts.append("<p class=\"meta\">This report was saved before kdiag kept call trees: shown are the phases "
                     "and, under each, its top functions by own time (re-run kdiag for the call tree).</p>")
    parts.append(charts.draw(f"{main.scenario}: icicle of the warm profile", 0.2 * _depth(tree) + 0.9,
                             _icicle_chart, tree, main.calls))
    parts.append(f'<details class="more"><summary>The call tree of {e(main.scenario)} ({main.calls} warm calls): '
                 f'the hot path opens</summary><div class="tree">{_tree_html(tree, tree.total_s, main.calls)}'
                 "</div></details>")
    for other in (p for p in report.profiles if p is not main):
        other_tree, _ = profile_tree(other)
        parts.append(f"<details class=\"more\"><summary>Call tree of {e(other.scenario)} ({other.calls} warm "
                     f"calls)</summary><div class=\"tree\">{_tree_html(other_tree, other_tree.total_s, other.calls)}"
                     "</div></details>")
    commands = "\n".join(f"kdiag view {shlex.quote(p.prof_path)}" for p in report.profiles)
    parts.append("<p>Every call, interactive, in snakeviz (served on 127.0.0.1):</p>" + _code_block(commands, "sh"))
    parts.append("</section>")
    return "\n".join(parts)


def _depth(node: CallNode, cap: int = ICICLE_MAX_DEPTH) -> int:
    deepest, stack = 0, [(node, 1)]
    while stack:
        current, level = stack.pop()
        deepest = max(deepest, level)
        if level < cap:
            stack.extend((child, level + 1) for child in current.children)
    return deepest


def _content_security_policy(script: str) -> str:
    # No network at all; of scripts, only this page's own (by hash). Inline styles are
    # needed by matplotlib's SVG.
    digest = base64.b64encode(hashlib.sha256(script.encode("utf-8")).digest()).decode("ascii")
    return (f"default-src 'none'; style-src 'unsafe-inline'; script-src 'sha256-{digest}'; img-src data:; "
            "base-uri 'none'; form-action 'none'")


__all__ = ["render", "e", "note", "profile_tree", "PHASE_COLOURS"]
