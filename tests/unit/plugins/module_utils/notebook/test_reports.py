"""Unit tests of the reports (JSON, JUnit XML, HTML) built from hand-made RunResult objects."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from typing import Dict, List, Optional

import jsonschema
import pytest

from ansible_collections.mlops.notebooks.plugins.module_utils.notebook import reports
from ansible_collections.mlops.notebooks.plugins.module_utils.notebook.model import (
    REPORT_SCHEMA_VERSION,
    CellResult,
    EngineError,
    NotebookResult,
    RunResult,
    Verdict,
)

INJECTION = '<script>document.title="pwned"</script><img src=x onerror="alert(1)">'
RED_ANSI_TRACEBACK = [
    "\x1b[0;31m---------------------------------------------------------------------------\x1b[0m",
    "\x1b[0;31mZeroDivisionError\x1b[0m                         Traceback (most recent call last)",
    "Cell \x1b[0;32mIn[3], line 1\x1b[0m\n\x1b[0;32m----> 1\x1b[0m \x1b[38;5;241m1\x1b[39m\x1b[38;5;241m/\x1b[39m\x1b[38;5;241m0\x1b[39m",
    "\x1b[0;31mZeroDivisionError\x1b[0m: division by zero",
]


def stdout(text: str) -> Dict:
    return {"output_type": "stream", "name": "stdout", "text": text}


def make_run() -> RunResult:
    """A run with one of everything the reports must show."""
    cells = [
        CellResult(index=0, golden_index=0, cell_id="imports", verdict=Verdict.PASS, matched_by="id",
                   source="import math", duration=0.012),
        CellResult(index=1, golden_index=1, cell_id="compute", verdict=Verdict.FAIL_OUTPUT, matched_by="id",
                   message="outputs differ",
                   expected=[stdout("header\nmean = 4.25\nfooter\n")],
                   actual=[stdout("header\nmean = 4.75\nfooter\n")],
                   diff="--- expected\n+++ actual\n@@ -2 +2 @@\n-mean = 4.25\n+mean = 4.75",
                   source="print(mean)", duration=0.5),
        CellResult(index=2, golden_index=2, cell_id=None, verdict=Verdict.PASS_NORMALIZED, matched_by="position",
                   rules_fired={"timestamp": 2, "memory-address": 1},
                   expected=[stdout("at 0x7f00\n")], actual=[stdout("at 0x7f00\n")]),
        CellResult(index=3, golden_index=3, cell_id="fit", verdict=Verdict.PASS_TOLERANT, max_error=3.5e-7),
        CellResult(index=4, golden_index=4, cell_id="boom", verdict=Verdict.FAIL_ERROR,
                   message="ZeroDivisionError: division by zero",
                   error={"ename": "ZeroDivisionError", "evalue": "division by zero",
                          "traceback": RED_ANSI_TRACEBACK},
                   actual=[{"output_type": "error", "ename": "ZeroDivisionError", "evalue": "division by zero",
                            "traceback": RED_ANSI_TRACEBACK}]),
        CellResult(index=5, golden_index=5, cell_id="slow", verdict=Verdict.SKIPPED, message="skip-execution tag"),
        CellResult(index=None, golden_index=6, cell_id=None, verdict=Verdict.MISSING,
                   message="golden cell has no executed counterpart", expected=[stdout("gone\n")]),
        CellResult(index=6, golden_index=None, cell_id="new", verdict=Verdict.EXTRA, message="not in golden",
                   actual=[stdout("new\n")]),
        CellResult(index=7, golden_index=7, cell_id="after", verdict=Verdict.NOT_RUN, message="an earlier cell failed"),
    ]
    good = NotebookResult(path="notebooks/analysis.ipynb", verdict=Verdict.FAIL_ERROR, golden="golden/analysis.ipynb",
                          cells=cells, kernel="python3", duration=2.5, rules_fired={"timestamp": 2},
                          warnings=["rule 'drop-progress' never fired"])
    broken = NotebookResult(path="notebooks/broken.ipynb", verdict=Verdict.FAIL_ERROR,
                            error="notebooks/broken.ipynb is not valid JSON: Expecting value (line 1 column 1)",
                            kernel_stderr="kernel said \x1b[31mno\x1b[0m")
    return RunResult(notebooks=[good, broken], duration=3.0)


class Dom(HTMLParser):
    """A tiny element tree from HTML: enough to find elements by tag/class and read their text."""

    VOID = {"meta", "br", "col", "img", "input", "hr", "link", "source", "wbr"}

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.root: Dict = {"tag": "#root", "attrs": {}, "children": [], "text": []}
        self.stack: List[Dict] = [self.root]
        self.all: List[Dict] = []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        element = {"tag": tag, "attrs": dict(attrs), "children": [], "text": [], "parent": self.stack[-1]}
        self.stack[-1]["children"].append(element)
        self.all.append(element)
        if tag not in self.VOID:
            self.stack.append(element)

    def handle_endtag(self, tag):
        for depth in range(len(self.stack) - 1, 0, -1):
            if self.stack[depth]["tag"] == tag:
                del self.stack[depth:]
                return

    def handle_data(self, data):
        self.stack[-1]["text"].append(data)
        self.stack[-1]["children"].append(data)

    @staticmethod
    def text(element: Dict) -> str:
        return "".join(c if isinstance(c, str) else Dom.text(c) for c in element["children"])

    def find(self, tag: str, cls: Optional[str] = None, inside: Optional[Dict] = None) -> List[Dict]:
        found = []
        for element in self.all:
            if element["tag"] != tag:
                continue
            if cls is not None and cls not in element["attrs"].get("class", "").split():
                continue
            if inside is not None and not self.is_inside(element, inside):
                continue
            found.append(element)
        return found

    @staticmethod
    def is_inside(element: Dict, ancestor: Dict) -> bool:
        node = element.get("parent")
        while node is not None:
            if node is ancestor:
                return True
            node = node.get("parent")
        return False


def cell_details(dom: Dom, anchor_suffix: str) -> Dict:
    matches = [d for d in dom.find("details", "cell") if d["attrs"].get("id", "").endswith(anchor_suffix)]
    assert len(matches) == 1, anchor_suffix
    return matches[0]


# ----------------------------------------------------------------------------- JSON


def test_json_report_validates_against_the_schema(tmp_path):
    path = reports.write_json(make_run(), tmp_path / "report.json")
    data = json.loads(open(path, encoding="utf-8").read())
    jsonschema.Draft202012Validator.check_schema(reports.REPORT_JSON_SCHEMA)
    jsonschema.Draft202012Validator(reports.REPORT_JSON_SCHEMA).validate(data)
    assert data["schema_version"] == REPORT_SCHEMA_VERSION
    assert data["summary"] == {"total": 2, "passed": 0, "failed": 2,
                               "verdicts": {**{v.value: 0 for v in Verdict}, "FAIL_ERROR": 2}}
    first = data["notebooks"][0]
    assert [c["cell_id"] for c in first["cells"]] == ["imports", "compute", None, "fit", "boom", "slow", None,
                                                      "new", "after"]
    assert first["cells"][1]["verdict"] == "FAIL_OUTPUT"
    assert first["cells"][1]["actual"] == [stdout("header\nmean = 4.75\nfooter\n")]
    assert first["counts"]["PASS"] == 1
    assert data["notebooks"][1]["error"].startswith("notebooks/broken.ipynb is not valid JSON")


def test_schema_rejects_reports_that_break_the_contract():
    validator = jsonschema.Draft202012Validator(reports.REPORT_JSON_SCHEMA)
    good = reports.report_dict(make_run())
    assert not list(validator.iter_errors(good))
    bad_version = dict(good, schema_version="0.1")
    bad_verdict = json.loads(json.dumps(good))
    bad_verdict["notebooks"][0]["cells"][0]["verdict"] = "MAYBE"
    no_notebooks = {k: v for k, v in good.items() if k != "notebooks"}
    for bad in (bad_version, bad_verdict, no_notebooks):
        assert list(validator.iter_errors(bad)), bad.get("schema_version")


def test_schema_describes_every_field_the_model_writes():
    # Guards against model.py growing a field that the published schema does not describe.
    data = reports.report_dict(make_run())
    schema = reports.REPORT_JSON_SCHEMA
    assert set(data) == set(schema["properties"])
    assert set(data["notebooks"][0]) == set(schema["$defs"]["notebook"]["properties"])
    assert set(data["notebooks"][0]["cells"][0]) == set(schema["$defs"]["cell"]["properties"])


def test_json_report_is_strict_json_with_non_finite_numbers_and_bad_text(tmp_path):
    run = make_run()
    run.duration = float("inf")
    run.notebooks[0].cells[3].max_error = float("nan")
    run.notebooks[0].cells[1].actual = [stdout("bad surrogate \udcff and NUL \x00\n")]
    path = reports.write_json(run, tmp_path / "sub" / "dir" / "report.json")

    def reject(constant):
        raise AssertionError("non-standard JSON constant %s" % constant)

    raw = open(path, "rb").read()
    raw.decode("utf-8")  # strict UTF-8
    data = json.loads(raw, parse_constant=reject)
    assert data["duration"] == "Infinity"
    assert data["notebooks"][0]["cells"][3]["max_error"] == "NaN"
    assert data["notebooks"][0]["cells"][1]["actual"][0]["text"] == "bad surrogate \ufffd and NUL \x00\n"
    jsonschema.Draft202012Validator(reports.REPORT_JSON_SCHEMA).validate(data)


# ----------------------------------------------------------------------------- JUnit


def test_junit_has_one_suite_per_notebook_and_one_case_per_cell(tmp_path):
    path = reports.write_junit(make_run(), tmp_path / "junit.xml")
    root = ET.parse(path).getroot()
    assert root.tag == "testsuites"
    assert (root.get("tests"), root.get("failures"), root.get("errors"), root.get("skipped")) == ("10", "5", "1", "1")
    assert root.get("time") == "3.000"
    suites = root.findall("testsuite")
    assert [s.get("name") for s in suites] == ["notebooks/analysis.ipynb", "notebooks/broken.ipynb"]
    cases = suites[0].findall("testcase")
    assert [c.get("name") for c in cases] == ["imports", "compute", "cell-2", "fit", "boom", "slow",
                                              "golden-cell-6", "new", "after"]
    assert {c.get("classname") for c in cases} == {"notebooks/analysis.ipynb"}
    assert cases[1].get("time") == "0.500"
    assert cases[0].get("time") == "0.012"
    assert suites[0].get("time") == "2.500"
    props = {p.get("name"): p.get("value") for p in suites[0].find("properties")}
    assert props["golden"] == "golden/analysis.ipynb"


def test_junit_failures_skips_and_bodies(tmp_path):
    root = ET.parse(reports.write_junit(make_run(), tmp_path / "junit.xml")).getroot()
    cases = {c.get("name"): c for c in root.iter("testcase")}
    failure = cases["compute"].find("failure")
    assert failure.get("type") == "FAIL_OUTPUT"
    assert failure.get("message") == "FAIL_OUTPUT: outputs differ"
    assert "-mean = 4.25\n+mean = 4.75" in failure.text
    error_failure = cases["boom"].find("failure")
    assert error_failure.get("message") == "FAIL_ERROR: ZeroDivisionError: division by zero"
    assert "----> 1 1/0" in error_failure.text and "\x1b" not in error_failure.text
    for name, verdict in (("golden-cell-6", "MISSING"), ("new", "EXTRA"), ("after", "NOT_RUN")):
        assert cases[name].find("failure").get("type") == verdict
    assert "-gone" in cases["golden-cell-6"].find("failure").text  # outputs diffed when no diff was given
    assert cases["slow"].find("skipped").get("message") == "skip-execution tag"
    for passing in ("imports", "cell-2", "fit"):
        assert cases[passing].find("failure") is None and cases[passing].find("skipped") is None
    assert "memory-address" in cases["cell-2"].find("system-out").text
    assert "3.5e-07" in cases["fit"].find("system-out").text
    notebook_error = cases["(notebook)"].find("error")
    assert notebook_error.get("message").startswith("notebooks/broken.ipynb is not valid JSON")
    assert "kernel said no" in notebook_error.text


def test_junit_escapes_markup_and_xml_forbidden_characters(tmp_path):
    run = make_run()
    cell = run.notebooks[0].cells[1]
    cell.message = 'bad "quote" & <tag> \x00\x07\x1b[1m'
    cell.diff = "-a\x0b\n+b\x01 </failure><injected/> ]]>"
    cell.cell_id = "id<&>\x02"
    path = reports.write_junit(run, tmp_path / "junit.xml")
    text = open(path, encoding="utf-8").read()
    assert not re.search("[\x00-\x08\x0b\x0c\x0e-\x1f]", text)
    root = ET.parse(path).getroot()  # well-formed
    assert root.find(".//injected") is None
    case = [c for c in root.iter("testcase") if c.get("name").startswith("id<&>")][0]
    assert case.get("name") == "id<&>\\x02"
    failure = case.find("failure")
    assert failure.get("message") == 'FAIL_OUTPUT: bad "quote" & <tag> \\x00\\x07'
    assert failure.text == "-a\\x0b\n+b\\x01 </failure><injected/> ]]>"


# ----------------------------------------------------------------------------- HTML


def test_html_shows_the_side_by_side_diff_escaped(tmp_path):
    run = make_run()
    run.notebooks[0].cells[1].expected = [stdout("same\nvalue < 4.25 & x\n")]
    run.notebooks[0].cells[1].actual = [stdout("same\nvalue > 4.75 & x\n")]
    page = open(reports.write_html(run, tmp_path / "report.html"), encoding="utf-8").read()
    assert "value &lt; 4.25 &amp; x" in page.replace("<mark>", "").replace("</mark>", "")
    dom = Dom(page)
    compute = cell_details(dom, "-compute")
    assert "open" in compute["attrs"]
    removed = [Dom.text(td) for td in dom.find("td", "del", inside=compute)]
    added = [Dom.text(td) for td in dom.find("td", "add", inside=compute)]
    assert removed == ["value < 4.25 & x"] and added == ["value > 4.75 & x"]
    # only the characters that differ are marked inside the changed lines
    assert [Dom.text(m) for m in dom.find("mark", inside=compute)] == ["<", "2", ">", "7"]
    unchanged = [Dom.text(td) for td in dom.find("td", "ctx", inside=compute)]
    assert unchanged == ["[stdout]", "[stdout]", "same", "same"]


def test_html_cells_failing_open_passing_closed_with_details(tmp_path):
    page = open(reports.write_html(make_run(), tmp_path / "report.html"), encoding="utf-8").read()
    dom = Dom(page)
    states = {d["attrs"]["id"]: "open" in d["attrs"] for d in dom.find("details", "cell")}
    assert states == {
        "nb-1-imports": False, "nb-1-compute": True, "nb-1-cell-2": False, "nb-1-fit": False,
        "nb-1-boom": True, "nb-1-slow": False, "nb-1-golden-cell-6": True, "nb-1-new": True, "nb-1-after": True,
    }
    normalized = Dom.text(cell_details(dom, "-cell-2"))
    assert "memory-address \u00d71" in normalized and "timestamp \u00d72" in normalized
    assert "max error 3.5e-07" in Dom.text(cell_details(dom, "-fit"))
    boom = cell_details(dom, "-boom")
    traceback = Dom.text(dom.find("pre", "tb", inside=boom)[0])
    assert "----> 1 1/0" in traceback and "ZeroDivisionError: division by zero" in traceback
    assert dom.find("table", "sxs", inside=boom) == []  # the error output is not diffed a second time
    assert "\x1b" not in page and "[0;31m" not in page
    alert = dom.find("div", "nb-error")
    assert len(alert) == 1 and "is not valid JSON" in Dom.text(alert[0]) and "kernel said no" in Dom.text(alert[0])
    rows = dom.find("tr", inside=dom.find("table", "summary")[0])[1:]
    cells_of = [[Dom.text(td) for td in dom.find("td", inside=row)] for row in rows]
    assert [c[0] for c in cells_of] == ["notebooks/analysis.ipynb", "notebooks/broken.ipynb"]
    assert [c[1] for c in cells_of] == ["FAIL_ERROR", "FAIL_ERROR notebook error"]
    assert [c[2] for c in cells_of] == ["9", "0"]
    assert "FAIL_OUTPUT1" in cells_of[0][3] and "PASS1" in cells_of[0][3]
    # every verdict badge has a colour rule in the stylesheet
    css = Dom.text(dom.find("style")[0])
    for verdict in Verdict:
        assert re.search(r"\.v-%s\b[^{]*\{background:" % verdict.value, css), verdict


def test_html_has_no_external_references(tmp_path):
    run = make_run()
    png = base64.b64encode(b"\x89PNG\r\n\x1a\nfake").decode()
    cell = run.notebooks[0].cells[1]
    cell.expected = cell.expected + [{"output_type": "display_data", "data": {"image/png": png, "text/plain": "<Fig>"}}]
    cell.actual = cell.actual + [{"output_type": "display_data", "data": {"image/png": png[:-4] + "AAAA"}}]
    page = open(reports.write_html(run, tmp_path / "report.html"), encoding="utf-8").read()
    dom = Dom(page)
    for element in dom.all:
        for name in ("src", "href", "action", "srcset", "poster", "data"):
            value = element["attrs"].get(name)
            if value is not None:
                assert value.startswith(("#", "data:image/")), (element["tag"], name, value)
    assert not dom.find("link") and not dom.find("iframe") and not dom.find("object")
    assert [s["attrs"] for s in dom.find("script")] == [{}]  # one inline script, no src
    assert "url(" not in page and "@import" not in page and "//" not in Dom.text(dom.find("style")[0])
    assert len(dom.find("img")) == 2  # the image outputs, inlined as data: URIs


def test_html_csp_pins_the_inline_style_and_script(tmp_path):
    dom = Dom(open(reports.write_html(make_run(), tmp_path / "r.html"), encoding="utf-8").read())
    csp = [m for m in dom.find("meta") if m["attrs"].get("http-equiv") == "Content-Security-Policy"][0]["attrs"]["content"]

    def pinned(text: str) -> str:
        return "'sha256-%s'" % base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()

    assert "default-src 'none'" in csp
    assert "script-src %s;" % pinned(Dom.text(dom.find("script")[0])) in csp
    assert "style-src %s;" % pinned(Dom.text(dom.find("style")[0])) in csp


def test_html_escapes_script_injection_everywhere(tmp_path):
    run = make_run()
    notebook = run.notebooks[0]
    notebook.path = "nb" + INJECTION + ".ipynb"
    notebook.warnings = [INJECTION]
    notebook.cells[1].actual = [stdout("mean = 4.75\n" + INJECTION + "\n"),
                                {"output_type": "display_data", "data": {"text/html": INJECTION}}]
    notebook.cells[1].message = INJECTION
    notebook.cells[1].diff = "+" + INJECTION
    notebook.cells[0].cell_id = INJECTION
    notebook.cells[0].source = INJECTION
    notebook.cells[2].rules_fired = {INJECTION: 1}
    notebook.cells[4].error = {"ename": INJECTION, "evalue": INJECTION, "traceback": [INJECTION]}
    run.notebooks[1].error = INJECTION
    page = reports.render_html(run, title=INJECTION)
    assert "<script>document.title" not in page
    assert "<img src=x" not in page and 'onerror="alert' not in page
    assert "&lt;script&gt;document.title=&quot;pwned&quot;&lt;/script&gt;" in page
    dom = Dom(page)
    assert len(dom.find("script")) == 1
    assert all(not any(k.startswith("on") for k in e["attrs"]) for e in dom.all)
    assert all(img["attrs"].get("src", "").startswith("data:") for img in dom.find("img"))
    assert INJECTION in Dom.text(dom.find("title")[0])  # shown as text, not run


# ----------------------------------------------------------------------------- pieces


def test_side_by_side_collapses_long_unchanged_runs():
    expected = ["line %d" % i for i in range(40)]
    actual = list(expected)
    actual[20] = "line twenty"
    dom = Dom(reports.side_by_side(expected, actual))
    gaps = [Dom.text(td) for td in dom.find("td", "gap")]
    assert gaps == ["\u22ef 17 unchanged lines \u22ef", "\u22ef 16 unchanged lines \u22ef"]
    context = [Dom.text(td) for td in dom.find("td", "ctx")][:6]
    assert context == ["line 17", "line 17", "line 18", "line 18", "line 19", "line 19"]
    assert [Dom.text(td) for td in dom.find("td", "del")] == ["line 20"]
    assert [Dom.text(td) for td in dom.find("td", "add")] == ["line twenty"]


def test_side_by_side_shows_lines_only_on_one_side():
    dom = Dom(reports.side_by_side(["a", "b"], ["a", "b", "c", "d"]))
    assert [Dom.text(td) for td in dom.find("td", "add")] == ["c", "d"]
    assert dom.find("td", "del") == [] and len(dom.find("td", "none")) == 2


def test_outputs_text_forms():
    png = base64.b64encode(b"png-bytes").decode()
    lines = reports.outputs_text([
        {"output_type": "stream", "name": "stderr", "text": ["warn\n", "again\n"]},
        {"output_type": "execute_result", "execution_count": 3,
         "data": {"text/plain": "42", "application/json": {"b": 1, "a": [1]}, "image/png": png}},
        {"output_type": "error", "ename": "KeyError", "evalue": "'x'", "traceback": ["\x1b[31mKeyError\x1b[0m: 'x'"]},
    ])
    digest = hashlib.sha256(png.encode()).hexdigest()[:16]
    assert lines == [
        "[stderr]", "warn", "again",
        "[execute_result text/plain]", "42",
        "[execute_result application/json]", "{", ' "a": [', "  1", " ],", ' "b": 1', "}",
        "[execute_result image/png]", "<image/png: %d base64 characters, sha256 %s>" % (len(png), digest),
        "[error]", "KeyError: 'x'",
    ]


def test_clean_text_strips_ansi_and_shows_forbidden_characters():
    assert reports.clean_text("\x1b[1;31mred\x1b[0m\x1b]0;title\x07 ok\x00\x7f\ud800\ttab\r\n") == \
        "red ok\\x00\\x7f\\ud800\ttab\r\n"
    assert reports.clean_text(None) == ""


def test_write_reports_writes_only_what_is_asked(tmp_path):
    written = reports.write_reports(make_run(), json_path=tmp_path / "r.json", html_path=str(tmp_path / "r.html"))
    assert written == {"json": str(tmp_path / "r.json"), "html": str(tmp_path / "r.html")}
    assert sorted(os.listdir(tmp_path)) == ["r.html", "r.json"]  # no temporary files left behind
    assert reports.write_reports(make_run()) == {}


def test_unwritable_report_path_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(reports.ReportError, match=r"cannot write report .*file/r\.xml") as info:
        reports.write_junit(make_run(), blocker / "r.xml")
    assert isinstance(info.value, EngineError)


def test_empty_run_still_makes_valid_reports(tmp_path):
    run = RunResult()
    written = reports.write_reports(run, tmp_path / "r.json", tmp_path / "r.xml", tmp_path / "r.html")
    jsonschema.Draft202012Validator(reports.REPORT_JSON_SCHEMA).validate(json.load(open(written["json"])))
    assert ET.parse(written["junit"]).getroot().get("tests") == "0"
    assert "no notebooks in this run" in open(written["html"]).read()
