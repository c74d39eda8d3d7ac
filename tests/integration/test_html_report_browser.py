"""The HTML report rendered by a real browser (Debian's chromium, headless, no network).

Checks what a person opening the report sees: the failing cell's side-by-side diff is in the
rendered DOM inside an open <details>, the passing cell is collapsed, the page's own inline script
runs under its Content-Security-Policy while markup printed by a notebook stays inert text, and a
screenshot really shows the highlighted changed lines.
"""

from __future__ import annotations

import shutil
import subprocess
from html.parser import HTMLParser
from typing import Dict, List, Optional

import pytest

from ansible_collections.mlops.notebooks.plugins.module_utils.notebook import reports
from ansible_collections.mlops.notebooks.plugins.module_utils.notebook.model import (
    CellResult,
    NotebookResult,
    RunResult,
    Verdict,
)

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="chromium is not installed: run `scripts/bootstrap.sh browser` (apt-get install chromium)",
)

# Any network use is switched off: the report must render from the file alone.
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--window-size=1280,1000", "--hide-scrollbars",
]
# If this ran, the page would carry the attribute; escaped, it is only text.
PAYLOAD = ("<script>document.documentElement.setAttribute('data-pwned','script')</script>"
           "<img src=x onerror=\"document.documentElement.setAttribute('data-pwned','img')\">")
EXPECTED_LINE = "accuracy: 0.9132"
ACTUAL_LINE = "accuracy: 0.8716"
# The report's colours for changed lines (reports._CSS: --del and --add).
REMOVED_BACKGROUND = (0xFF, 0xEB, 0xE9)
ADDED_BACKGROUND = (0xE6, 0xFF, 0xEC)


def one_failure_run() -> RunResult:
    def stdout(text: str) -> Dict:
        return {"output_type": "stream", "name": "stdout", "text": text}

    passing = CellResult(index=0, golden_index=0, cell_id="load-data", verdict=Verdict.PASS, matched_by="id",
                         source="print(df.shape)", actual=[stdout("(150, 5)\n" + PAYLOAD + "\n")],
                         expected=[stdout("(150, 5)\n" + PAYLOAD + "\n")], duration=0.21)
    failing = CellResult(index=1, golden_index=1, cell_id="evaluate", verdict=Verdict.FAIL_OUTPUT, matched_by="id",
                         message="stdout differs from the golden output",
                         expected=[stdout("model: logistic\n%s\nsamples: 150\n" % EXPECTED_LINE)],
                         actual=[stdout("model: logistic\n%s\nsamples: 150\n" % ACTUAL_LINE)],
                         diff="--- expected\n+++ actual\n@@ -2 +2 @@\n-%s\n+%s" % (EXPECTED_LINE, ACTUAL_LINE),
                         source="print(report)", duration=1.4)
    notebook = NotebookResult(path="examples/iris.ipynb", verdict=Verdict.FAIL_OUTPUT,
                              golden="examples/iris.golden.ipynb", cells=[passing, failing],
                              kernel="python3", duration=3.2)
    return RunResult(notebooks=[notebook], duration=3.4)


def run_chromium(args: List[str], profile: str) -> subprocess.CompletedProcess:
    proc = subprocess.run([CHROMIUM, *CHROMIUM_FLAGS, "--user-data-dir=" + profile, *args],
                          capture_output=True, text=True, timeout=180, check=False,
                          stdin=subprocess.DEVNULL)  # chromium must not touch the test run's stdin
    if proc.returncode != 0:
        raise AssertionError("chromium failed (rc=%d):\n%s" % (proc.returncode, proc.stderr[-3000:]))
    return proc


class Dom(HTMLParser):
    """Elements of the dumped DOM with their attributes, parents and text."""

    VOID = {"meta", "br", "col", "img", "input", "hr", "link"}

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: List[Dict] = [{"tag": "#root", "attrs": {}, "children": [], "parent": None}]
        self.all: List[Dict] = []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        element = {"tag": tag, "attrs": dict(attrs), "children": [], "parent": self.stack[-1]}
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
        self.stack[-1]["children"].append(data)

    @staticmethod
    def text(element: Dict) -> str:
        return "".join(c if isinstance(c, str) else Dom.text(c) for c in element["children"])

    def find(self, tag: str, cls: Optional[str] = None, inside: Optional[Dict] = None) -> List[Dict]:
        def within(element: Dict) -> bool:
            node = element["parent"]
            while node is not None and node is not inside:
                node = node["parent"]
            return node is inside

        return [e for e in self.all if e["tag"] == tag
                and (cls is None or cls in e["attrs"].get("class", "").split())
                and (inside is None or within(e))]


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("html-report")
    page = reports.write_html(one_failure_run(), workdir / "report.html")
    url = "file://" + page
    dumped = run_chromium(["--dump-dom", url], str(workdir / "profile-dom")).stdout
    screenshot = str(workdir / "report.png")
    run_chromium(["--screenshot=" + screenshot, url], str(workdir / "profile-shot"))
    print("report %s, screenshot %s" % (page, screenshot))
    return {"dom": Dom(dumped), "raw": dumped, "screenshot": screenshot}


def cell(dom: Dom, cell_id: str) -> Dict:
    found = [d for d in dom.find("details", "cell") if d["attrs"].get("id", "").endswith("-" + cell_id)]
    assert len(found) == 1, "no single <details> for cell %s in the rendered DOM" % cell_id
    return found[0]


def test_failing_cell_diff_is_rendered_in_an_open_details(rendered):
    dom = rendered["dom"]
    failing = cell(dom, "evaluate")
    assert "open" in failing["attrs"], "the failing cell must be expanded by default"
    removed = [Dom.text(td) for td in dom.find("td", "del", inside=failing)]
    added = [Dom.text(td) for td in dom.find("td", "add", inside=failing)]
    assert removed == [EXPECTED_LINE] and added == [ACTUAL_LINE]
    # the diff table is not tucked away in a closed nested <details>
    table = dom.find("table", "sxs", inside=failing)[0]
    node = table["parent"]
    while node is not failing:
        assert not (node["tag"] == "details" and "open" not in node["attrs"]), "diff hidden in closed details"
        node = node["parent"]
    passing = cell(dom, "load-data")
    assert "open" not in passing["attrs"], "passing cells are collapsed by default"


def test_own_script_runs_and_printed_markup_stays_text(rendered):
    dom = rendered["dom"]
    html_element = dom.find("html")[0]
    # The inline script ran: its hash in the Content-Security-Policy matches.
    assert "js" in html_element["attrs"].get("class", "").split()
    assert "data-pwned" not in html_element["attrs"], "markup from a notebook output was executed"
    assert len(dom.find("script")) == 1
    assert "<script>document.documentElement" in Dom.text(cell(dom, "load-data"))


def test_screenshot_shows_the_highlighted_changed_lines(rendered):
    image_module = pytest.importorskip("PIL.Image", reason="Pillow is needed to read the screenshot")
    with image_module.open(rendered["screenshot"]) as shot:
        rgb = shot.convert("RGB")
        colours = dict((colour, count) for count, colour in rgb.getcolors(maxcolors=1 << 20))
    assert rgb.size == (1280, 1000)
    # One highlighted row is about 600 x 17 pixels (~9000); 2000 means a good part of it is on screen.
    assert colours.get(REMOVED_BACKGROUND, 0) > 2000, "no removed-line highlight visible in the screenshot"
    assert colours.get(ADDED_BACKGROUND, 0) > 2000, "no added-line highlight visible in the screenshot"
