"""report.html: self-contained (no external reference), a chart per section, everything escaped,
small, drawn without matplotlib imported by `kdiag --help`, and served by `kdiag view RUN_FOLDER`."""

from __future__ import annotations

import dataclasses
import html.parser
import json
import math
import random
import re
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

import factories as fx
from kdiag.datamodel.measurement import Measurement
from checks import assert_refused
from kdiag import views
from kdiag.analysis.diagnose import diagnose
from kdiag.datamodel.profile import GRAPH, INPUT, OTHER, PHASES, TFDATA, TRACING, CallNode
from kdiag.datamodel.report import Finding
from kdiag.render import html as report_html
from kdiag.render.json import render as render_json

pytest.importorskip("matplotlib")

ROOT = Path(__file__).resolve().parent.parent
MAX_BYTES = 3 * 1024 * 1024
CHART_SECTIONS = ("strategies", "distribution", "phases", "profile")
HOSTILE = "<script>alert(1)</script> [/x] $x^2$ & \"q\" 'a'"
SHARES = {INPUT: 0.05, TFDATA: 0.45, TRACING: 0.3, GRAPH: 0.05, OTHER: 0.15}


class Page(html.parser.HTMLParser):
    """What the tests look at: every src/href, the tags, and which section holds which chart."""

    def __init__(self, text: str):
        super().__init__(convert_charrefs=True)
        self.references = []  # (tag, attribute, value)
        self.tags = []
        self.attributes = []  # (tag, name, value)
        self.svgs_in = {}  # section id -> number of <svg>
        self.section = None
        self.text = []
        self.title = ""
        self._in_title = False
        self.feed(text)
        self.close()

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        for name, value in attrs:
            self.attributes.append((tag, name, value or ""))
            if name in ("src", "href", "xlink:href", "action", "data", "poster"):
                self.references.append((tag, name, value or ""))
        if tag == "section":
            self.section = dict(attrs).get("id")
        if tag == "svg" and self.section:
            self.svgs_in[self.section] = self.svgs_in.get(self.section, 0) + 1
        self._in_title = tag == "title" and self.section is None and "svg" not in self.tags  # the page's own

    def handle_endtag(self, tag):
        if tag == "section":
            self.section = None
        if tag == "title":
            self._in_title = False

    def handle_data(self, data):
        self.text.append(data)
        if self._in_title:
            self.title += data

    @property
    def all_text(self) -> str:
        return "".join(self.text)


def sampled(result, n: int = 2000, spread: float = 0.15, seed: int = 0):
    """The factory strategy with n log-normal samples around its median: the sample count of a real run."""
    median_s = result.measurement.median_s
    rng = random.Random(seed)
    samples = tuple(median_s * math.exp(rng.gauss(0.0, spread)) for _ in range(n))
    m = result.measurement
    return dataclasses.replace(result, measurement=Measurement.from_samples(m.strategy, m.first_call_s, samples,
                                                                             max_samples=len(samples)))


def synthetic_tree(total_s: float, depth: int = 5, fanout: int = 3) -> CallNode:
    """A call tree of 1 + 3 + ... + 3^5 = 364 nodes, phases varying along the paths."""
    counter = iter(range(10_000))

    def node(level: int, seconds: float, phase: str) -> CallNode:
        number = next(counter)
        if level == depth:
            return CallNode(f"leaf_{number}", f"keras/src/mod_{number}.py", number, phase, seconds, seconds)
        weights = [0.6, 0.3, 0.1][:fanout]
        children = [node(level + 1, seconds * 0.9 * w, PHASES[(PHASES.index(phase) + i) % len(PHASES)])
                    for i, w in enumerate(weights)]
        return CallNode(f"function_{number}", f"tensorflow/python/f_{number}.py", number, phase, seconds,
                        seconds * 0.1, children)

    return node(0, total_s, OTHER)


def realistic_report(model_name: str = "tiny", samples: int = 2000, call_trees: bool = True, **changes):
    strategies = [sampled(s, samples, seed=i) for i, s in enumerate(fx.typical_keras3())]
    profiles = []
    for scenario, median in (("predict", 60.0), ("predict (compiled)", 61.0)):
        profile = fx.profile(scenario, SHARES, median, top_functions=[
            fx.top_function(TFDATA, "OwnedIterator._create_iterator", 300.0),
            fx.top_function(TRACING, "trace_function", 200.0, file="tensorflow/python/eager/x.py")])
        if call_trees:
            profile = dataclasses.replace(profile, call_tree=synthetic_tree(profile.profiled_per_call_s * 10))
        profiles.append(profile)
    report = fx.report(strategies, profiles, model=fx.model_info(name=model_name), **changes)
    return dataclasses.replace(report, findings=diagnose(report))


def assert_self_contained(page: Page):
    for tag, name, value in page.references:
        value = value.strip().lower()
        assert not value.startswith(("http:", "https:", "//", "ftp:", "file:")), (tag, name, value)
        assert "http://" not in value and "https://" not in value, (tag, name, value)
    assert "link" not in page.tags and "iframe" not in page.tags and "img" not in page.tags
    scripts_with_src = [v for tag, name, v in page.attributes if tag == "script" and name == "src"]
    assert not scripts_with_src


# --- the page ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def realistic():
    report = realistic_report()
    started = time.perf_counter()
    text = report_html.render(report)
    return report, text, time.perf_counter() - started


def test_no_external_reference_and_a_chart_in_every_chart_section(realistic):
    report, text, _ = realistic
    page = Page(text)
    assert_self_contained(page)
    for section in CHART_SECTIONS:
        assert page.svgs_in.get(section, 0) >= 1, f"no chart in section {section}"
    assert "not drawn" not in text
    # The page forbids any fetch itself, and lets only its own script run.
    csp = next(v for tag, name, v in page.attributes if tag == "meta" and name == "content" and "default-src" in v)
    assert "default-src 'none'" in csp and "unsafe-inline" not in csp.split("script-src", 1)[1].split(";")[0]


def test_the_verdict_and_findings_come_first_and_name_the_drop_in_fix(realistic):
    """The verdict, then the findings, before any table or chart (they started ~4,300 px down a
    7,500 px page, after the call tree); the call tree and the environment folded."""
    report, text, _ = realistic
    fix = views.verdict.verdict(report).fix
    match = re.search(r'<p class="verdict"><strong>Call (.+?) instead of predict:</strong>', text)
    assert match and match.group(1) == fix.name
    order = [text.index(f'id="{key}"') for key in ("verdict", "findings", "strategies", "phases", "profile")]
    assert order == sorted(order)
    assert text.index('class="classification"') < text.index('class="verdict"')
    profile = text.split('id="profile"', 1)[1].split("</section>", 1)[0]
    assert '<details class="more"><summary>The call tree of predict' in profile  # folded
    assert "<details><summary>The fields of TensorFlow's issue template, and the model</summary>" in text


def test_size_of_a_run_with_realistic_sample_counts(realistic):
    report, text, seconds = realistic
    assert all(s.measurement.count == 2000 for s in report.strategies)
    assert len(text.encode("utf-8")) < MAX_BYTES


def test_size_does_not_grow_with_the_number_of_samples():
    # TFLite on a tiny model gets ~70,000 samples in a 1 s budget: the charts draw statistics, not points.
    small = len(report_html.render(realistic_report(samples=2000)))
    large = len(report_html.render(realistic_report(samples=50_000)))
    assert large < small * 1.1 and large < MAX_BYTES


def test_hostile_names_are_escaped_everywhere():
    tree = CallNode("all profiled calls", "", 0, OTHER, 1.0, 0.0, [
        CallNode(HOSTILE, "<img src=x onerror=alert(2)>.py", 3, TFDATA, 0.9, 0.9)])
    report = realistic_report(model_name=HOSTILE, command=f"kdiag inspect '{HOSTILE}'")
    profile = dataclasses.replace(report.profiles[0], prof_path=f"/runs/{HOSTILE}/predict.prof", call_tree=tree,
                                  top_functions=[fx.top_function(TFDATA, HOSTILE, 5.0)])
    strategies = [dataclasses.replace(report.strategies[0], notes=[HOSTILE])] + report.strategies[1:]
    finding = Finding("hostile", "high", HOSTILE, [HOSTILE], HOSTILE, f"x = '{HOSTILE}'\n</code></pre><b>x</b>")
    report = dataclasses.replace(report, profiles=[profile] + report.profiles[1:], strategies=strategies,
                                 findings=[finding] + report.findings,
                                 model=dataclasses.replace(report.model, source=HOSTILE))
    text = report_html.render(report)
    page = Page(text)
    assert_self_contained(page)
    assert page.tags.count("script") == 1  # the page's own
    assert "b" not in page.tags
    assert not any(name.startswith("on") for _, name, _ in page.attributes)
    assert page.title == f"kdiag report: {HOSTILE}"
    shown = page.all_text
    assert shown.count(HOSTILE) >= 6  # title, h1, command, environment, finding, tree, notes... as text
    assert "[/x]" in shown
    assert f"x = '{HOSTILE}'\n</code></pre><b>x</b>" in shown  # the snippet, intact and inert
    assert "not drawn" not in text  # `$x^2$` is not mathtext


def test_a_strategy_name_with_markup_reaches_the_charts_as_text():
    strategies = fx.typical_keras3()
    strategies[2] = dataclasses.replace(strategies[2], name=HOSTILE)
    text = report_html.render(fx.report(strategies))
    assert "not drawn" not in text
    section = text.split('id="strategies"', 1)[1].split("</section>", 1)[0]
    svg = section[section.index("<svg"):section.index("</svg>")]
    assert "&lt;script&gt;alert(1)&lt;/script&gt; [/x] $x^2$" in svg
    assert "<script" not in svg


def test_phase_colours_are_the_same_in_the_bars_and_the_call_tree(realistic):
    report, text, _ = realistic
    phases_section = text.split('id="phases"', 1)[1].split("</section>", 1)[0]
    profile_section = text.split('id="profile"', 1)[1].split("</section>", 1)[0]
    for name, share in SHARES.items():
        colour = report_html.PHASE_COLOURS[name]
        assert colour.lower() in phases_section.lower(), name
        assert f'style="background:{colour}" title="{name}"' in profile_section, name


def test_compile_delta_and_noise_band_are_stated_as_views_says(realistic):
    report, text, _ = realistic
    section = text.split('id="phases"', 1)[1].split("</section>", 1)[0]
    rows = re.findall(r"<tr>(.*?)</tr>", section)
    for delta in views.compile_phase_deltas(report):
        row = next(r for r in rows if r.startswith(f"<td>{report_html.e(delta.phase)}</td>"))
        assert row.endswith(f'<td class="num">{report_html.e(delta.text)}</td>'), row
    total = views.compile_total_delta(report)
    assert next(r for r in rows if r.startswith("<td>total</td>")).endswith(f">{report_html.e(total.text)}</td>")


def test_findings_snippets_are_copyable_code_blocks(realistic):
    report, text, _ = realistic
    with_snippets = [f for f in report.findings if f.snippet]
    assert with_snippets
    for finding in with_snippets:
        assert f"<pre><code class=\"language-python\">{report_html.e(finding.snippet)}</code></pre>" in text


def test_the_view_command_is_given_for_every_profile(realistic):
    report, text, _ = realistic
    for profile in report.profiles:
        assert f"kdiag view {profile.prof_path}" in text


def test_a_report_saved_before_call_trees_shows_phases_and_their_top_functions():
    report = realistic_report(call_trees=False)
    text = report_html.render(report)
    section = text.split('id="profile"', 1)[1].split("</section>", 1)[0]
    assert "saved before kdiag kept call trees" in section
    assert "OwnedIterator._create_iterator" in section and "trace_function" in section
    assert "<svg" in section


def test_without_matplotlib_every_chart_says_so_and_the_tables_stay(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib raises ImportError
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    text = report_html.render(realistic_report())
    page = Page(text)
    assert "svg" not in page.tags
    for section in CHART_SECTIONS:
        body = text.split(f'id="{section}"', 1)[1].split("</section>", 1)[0]
        assert "not drawn: matplotlib is not installed (pip install kdiag[html])" in body, section
    assert "<table>" in text


def test_a_chart_that_fails_is_left_out_for_its_table_and_no_error_is_shown(monkeypatch):
    def broken(figure, *args):
        raise RuntimeError("drawing broke")

    monkeypatch.setattr(report_html, "_icicle_chart", broken)  # the name report.html draws the icicle with
    text = report_html.render(realistic_report())
    section = text.split('id="profile"', 1)[1].split("</section>", 1)[0]
    assert "drawing broke" not in text and "RuntimeError" not in text and "not drawn" not in text
    assert 'class="tree"' in section  # the call tree has what the icicle would have drawn
    assert Page(text).svgs_in.get("strategies")


def test_whiskers_are_drawn_when_the_kept_samples_fall_beside_the_median():
    """The Conv1D+LSTM model's chart read "not drawn (ValueError: 'xerr' must not contain negative
    values)": its median (from every call) was below the 25th percentile of the thinned, rounded samples."""
    median_s, samples = 1.0, tuple([1.2] * 8 + [1.3] * 4)  # every kept sample above the stored median
    skewed = Measurement("predict", 2.0, samples, count=500, median_s=median_s, iqr_s=0.01, p90_s=1.3, p99_s=1.3,
                         min_s=0.9, max_s=1.3, mean_s=1.1)
    strategies = [dataclasses.replace(s, measurement=skewed) if s.name == "predict" else s for s in fx.typical_keras3()]
    text = report_html.render(fx.report(strategies))
    assert Page(text).svgs_in.get("strategies") and "xerr" not in text


def test_every_icicle_box_has_a_tooltip_with_the_whole_name():
    long_name = "FunctionWithAVeryLongQualifiedName.method_that_is_cut_in_its_box"
    tree = CallNode("all profiled calls", "", 0, OTHER, 1.0, 0.0, [
        CallNode(long_name, "keras/x.py", 3, TFDATA, 0.02, 0.02), CallNode("big", "keras/y.py", 4, GRAPH, 0.98, 0.98)])
    report = realistic_report()
    profile = dataclasses.replace(report.profiles[0], call_tree=tree)
    text = report_html.render(dataclasses.replace(report, profiles=[profile] + report.profiles[1:]))
    section = text.split('id="profile"', 1)[1].split("</section>", 1)[0]
    titles = re.findall(r"<title>([^<]*)</title>", section)
    assert any(t.startswith(long_name + ":") for t in titles)  # the box too narrow for its label has a tooltip
    assert any(t.startswith("big:") for t in titles)


def test_no_sweeps_section_without_sweep_data(realistic):
    _, text, _ = realistic
    assert 'id="sweeps"' not in text


def test_help_and_import_do_not_load_matplotlib():
    code = ("import io, sys, contextlib\n"
            "import kdiag\n"
            "assert 'matplotlib' not in sys.modules, 'import kdiag'\n"
            "from kdiag.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            "    status = main(['--help'])\n"
            "assert status == 0\n"
            "heavy = [m for m in ('matplotlib', 'tensorflow', 'numpy') if m in sys.modules]\n"
            "assert not heavy, heavy\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert result.returncode == 0, result.stderr


# --- kdiag view RUN_FOLDER -----------------------------------------------------------------


def _get(url: str):
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.headers.get("Content-Type"), response.read()
    except urllib.error.HTTPError as error:
        return error.code, None, b""


def test_report_server_serves_the_page_on_localhost_only():
    from kdiag.view import LOCALHOST, report_server

    server = report_server(b"<html>ok</html>", LOCALHOST, 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        host, port = server.server_address[:2]
        assert host == "127.0.0.1"
        assert _get(f"http://{host}:{port}/report.html") == (200, "text/html; charset=utf-8", b"<html>ok</html>")
        assert _get(f"http://{host}:{port}/")[0] == 200
        assert _get(f"http://{host}:{port}/report.json")[0] == 404
        assert _get(f"http://{host}:{port}/../report.html")[0] == 404
    finally:
        server.shutdown()
        server.server_close()


def test_kdiag_view_of_a_prof_serves_that_profile_only_and_only_to_requests_for_this_machine(tmp_path):
    """snakeviz as shipped answers any Host: and lists any folder (/snakeviz/%2Fetc); behind kdiag's
    guard it answers local names only, and only the profile it was started for."""
    import cProfile
    import socket
    from urllib.parse import quote

    from kdiag.view import snakeviz_command

    prof = tmp_path / "predict.prof"
    cProfile.run("sum(range(10))", str(prof))
    with socket.socket() as probe:  # a free port for snakeviz to take
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(snakeviz_command(prof, True, None, port), cwd=tmp_path, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    try:
        started = ""
        while "started on" not in started:
            started = server.stdout.readline()
            assert started or server.poll() is None, "snakeviz stopped before serving"
        port = int(re.search(r"started on \S+:(\d+)", started).group(1))
        own = "/snakeviz/" + quote(str(prof), safe="")
        status, body = _get_with_host(port, f"127.0.0.1:{port}", own)
        assert status == 200 and b"<title>predict</title>" in body
        assert _get_with_host(port, f"localhost:{port}", own)[0] == 200
        for bad in (f"attacker.example:{port}", f"127.0.0.1:{port + 1}", "localhost", ""):
            assert _get_with_host(port, bad, own)[0] == 421, bad
        assert _get_with_host(port, None, own)[0] == 400  # no Host: at all, refused by tornado itself
        for other in ("/snakeviz/" + quote("/etc", safe=""), "/snakeviz/" + quote(str(tmp_path), safe="")):
            assert _get_with_host(port, f"127.0.0.1:{port}", other)[0] == 404, other  # no folder listing
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_kdiag_view_run_folder_serves_its_report(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "report.html").write_text("<!DOCTYPE html><title>saved page</title>", encoding="utf-8")
    process = subprocess.Popen([sys.executable, "-m", "kdiag", "view", str(run), "--server", "--port", "0"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        line = process.stdout.readline()
        url = re.search(r"at (http://127\.0\.0\.1:\d+/report\.html)", line)
        assert url, line + process.stderr.read()
        assert _get(url.group(1))[2] == b"<!DOCTYPE html><title>saved page</title>"
    finally:
        process.terminate()
        process.wait(timeout=20)
        process.stdout.close()
        process.stderr.close()


def test_a_run_folder_without_report_html_is_rendered_from_its_json(tmp_path):
    from kdiag.view import run_page

    (tmp_path / "report.json").write_text(render_json(realistic_report(samples=50)), encoding="utf-8")
    page = run_page(tmp_path).decode("utf-8")
    assert page.startswith("<!DOCTYPE html>") and "kdiag report: tiny" in page
    assert not (tmp_path / "report.html").exists()  # a run folder is not written to afterwards


def test_view_refuses_a_folder_that_is_not_a_run(tmp_path):
    import io

    from kdiag.cli import Env, main

    env = Env(io.StringIO(), io.StringIO())
    code = main(["view", str(tmp_path)], env)
    assert_refused((code, env.stdout.getvalue(), env.stderr.getvalue()), "no report.html or report.json")


# --- a real run -------------------------------------------------------------------------------


@pytest.mark.slow
def test_real_tiny_run_report_html(tmp_path):
    import kdiag

    report = kdiag.inspect(example="tiny", budget_s=0.05, min_calls=3, profile=True, out_dir=tmp_path)
    assert report.profile("predict").call_tree is not None
    started = time.perf_counter()
    text = report_html.render(report)
    seconds = time.perf_counter() - started
    page = Page(text)
    assert_self_contained(page)
    for section in CHART_SECTIONS:
        assert page.svgs_in.get(section, 0) >= 1, section
    assert "not drawn" not in text
    assert len(text.encode("utf-8")) < MAX_BYTES
    # The tree in the page is the engine's: its root's children are the profile's roots.
    tree = report.profile("predict").call_tree
    assert report_html.e(tree.children[0].function) in text
    print(f"\nreport.html of a real tiny run: {len(text.encode('utf-8')):,} bytes, rendered in {seconds:.2f} s")


@pytest.mark.slow
def test_inspect_format_html_prints_it_and_the_run_folder_keeps_it(tmp_path, monkeypatch):
    import io

    from kdiag.cli import Env, main

    monkeypatch.chdir(tmp_path)
    env = Env(io.StringIO(), io.StringIO())
    code = main(["inspect", "--example", "tiny", "--format", "html", "--out", str(tmp_path / "run"), "--budget",
                 "0.02", "--min-calls", "2", "--strategies", "predict,predict-compiled,tf-function",
                 "--profile-calls", "2"], env)
    assert code == 0, env.stderr.getvalue()
    printed = env.stdout.getvalue()
    assert printed.startswith("<!DOCTYPE html>")
    assert (tmp_path / "run" / "report.html").read_text(encoding="utf-8") == printed
    assert "kdiag view" in env.stderr.getvalue()
    saved = json.loads((tmp_path / "run" / "report.json").read_text(encoding="utf-8"))
    assert saved["profiles"][0]["call_tree"]["function"] == "all profiled calls"


def _get_with_host(port: int, host_header, path: str = "/report.html"):
    import http.client

    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.putrequest("GET", path, skip_host=True)
        if host_header is not None:
            connection.putheader("Host", host_header)
        connection.endheaders()
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def test_report_server_answers_only_requests_for_this_machine():
    """DNS rebinding: a web page whose name resolves to 127.0.0.1 reaches the server with its own
    name in Host:; only 127.0.0.1:PORT and localhost:PORT (and a --host given) are answered."""
    from kdiag.view import LOCAL_NAMES, LOCALHOST, report_server

    server = report_server(b"<html>ok</html>", LOCALHOST, 0, LOCAL_NAMES + ("kdiag-box.lan",))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        port = server.server_address[1]
        for good in (f"127.0.0.1:{port}", f"localhost:{port}", f"LocalHost:{port}", f"kdiag-box.lan:{port}"):
            assert _get_with_host(port, good) == (200, b"<html>ok</html>"), good
        for bad in (f"attacker.example:{port}", "attacker.example", f"127.0.0.1:{port + 1}", "localhost",
                    f"127.0.0.1.attacker.example:{port}", "", None):
            status, body = _get_with_host(port, bad)
            assert status == 421 and b"<html>ok</html>" not in body, (bad, status)
    finally:
        server.shutdown()
        server.server_close()
