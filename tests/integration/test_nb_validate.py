"""nb_validate through ansible-playbook, on real kernels."""

from __future__ import annotations

import json
import os
import shutil

import nbformat
from nbformat.v4 import new_code_cell, new_notebook, new_output

from playbook_runner import ROOT, run_playbook

EXAMPLES = os.path.join(ROOT, "examples")
EXPECTED_EXAMPLE_VERDICTS = {
    "01_exact_pass.ipynb": "PASS",
    "02_normalized_pass.ipynb": "PASS_NORMALIZED",
    "03_tolerant_pass.ipynb": "PASS_TOLERANT",
    "04_regression.ipynb": "FAIL_OUTPUT",
    "05_error.ipynb": "FAIL_ERROR",
    "06_timeout.ipynb": "FAIL_TIMEOUT",
}


def _by_name(notebooks):
    return {os.path.basename(nb["path"]): nb for nb in notebooks}


def _cells(nb):
    return {c["cell_id"]: c for c in nb["cells"]}


def _notebook(path, sources, outputs=None, kernel="python3"):
    cells = []
    for i, src in enumerate(sources):
        cell = new_code_cell(src)
        cell.id = "c%d" % i
        if outputs is not None:
            cell.outputs = outputs[i]
        cells.append(cell)
    nb = new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": kernel, "display_name": kernel, "language": "python"}
    nbformat.write(nb, str(path))
    return str(path)


def test_demo_playbook_gives_each_example_its_verdict(tmp_path):
    run = run_playbook(os.path.join(ROOT, "playbooks", "validate_notebooks.yml"),
                       extra_vars={"nb_report_dir": str(tmp_path / "reports")})
    assert run.rc == 0, run.stdout[-3000:]
    result = run.result("Execute and compare the notebooks")
    assert result["changed"] is False
    notebooks = _by_name(result["notebooks"])
    assert {name: nb["verdict"] for name, nb in notebooks.items()} == EXPECTED_EXAMPLE_VERDICTS
    assert result["summary"]["total"] == 6
    assert result["summary"]["passed"] == 3
    assert result["summary"]["failed"] == 3

    exact = _cells(notebooks["01_exact_pass.ipynb"])
    assert exact["random-seed"]["verdict"] == "PASS"          # NBVAL_IGNORE_OUTPUT
    assert exact["slow-plot"]["verdict"] == "SKIPPED"         # skip-execution
    normalized = _cells(notebooks["02_normalized_pass.ipynb"])
    assert normalized["objects"]["rules_fired"].get("memory_address")
    assert normalized["when"]["rules_fired"].get("timestamp") and normalized["when"]["rules_fired"].get("uuid")
    assert normalized["paths"]["rules_fired"].get("tmp_path")
    tolerant = _cells(notebooks["03_tolerant_pass.ipynb"])
    assert tolerant["sum"]["verdict"] == "PASS_TOLERANT" and 0 < tolerant["sum"]["max_error"] < 1e-15
    regression = _cells(notebooks["04_regression.ipynb"])
    assert regression["accuracy"]["verdict"] == "FAIL_OUTPUT"
    assert "-accuracy: 0.912" in regression["accuracy"]["diff"] and "+accuracy: 0.871" in regression["accuracy"]["diff"]
    error = _cells(notebooks["05_error.ipynb"])
    assert error["train"]["verdict"] == "FAIL_ERROR" and error["evaluate"]["verdict"] == "NOT_RUN"
    timeout = _cells(notebooks["06_timeout.ipynb"])
    assert timeout["wait"]["verdict"] == "FAIL_TIMEOUT" and timeout["after"]["verdict"] == "NOT_RUN"

    reports = result["reports"]
    report = json.load(open(reports["json"]))
    assert report["schema_version"] and len(report["notebooks"]) == 6
    html = open(reports["html"]).read()
    assert "accuracy: 0.871" in html and "accuracy: 0.912" in html
    assert os.path.getsize(reports["junit"]) > 0
    executed = os.listdir(reports["executed_dir"])
    assert "04_regression.ipynb" in executed
    # the summary and the report locations are printed
    summary = run.result("Show the summary and where the reports are")["msg"]
    assert summary[0] == "3 of 6 notebooks passed" and reports["html"] in summary[1]


def test_fail_on_mismatch_fails_the_task_and_still_returns_results(tmp_path, module_runner):
    result = module_runner("mlops.notebooks.nb_validate", {
        "notebooks": [os.path.join(EXAMPLES, "notebooks", "04_regression.ipynb")],
        "golden": os.path.join(EXAMPLES, "golden", "04_regression.ipynb"),
    })
    assert result["failed"] is True
    assert "1 of 1 notebooks did not pass" in result["msg"] and "FAIL_OUTPUT" in result["msg"]
    assert result["notebooks"][0]["verdict"] == "FAIL_OUTPUT"


def test_bad_inputs_fail_alone_and_the_rest_still_runs(tmp_path, module_runner):
    good = _notebook(tmp_path / "good.ipynb", ["print('fine')"],
                     [[new_output("stream", name="stdout", text="fine\n")]])
    corrupt = tmp_path / "corrupt.ipynb"
    corrupt.write_text('{"cells": [ {"cell_type": "code", ')
    latin1 = tmp_path / "latin1.ipynb"
    latin1.write_bytes(open(good, "rb").read().replace(b"fine\\n", b"caf\xe9\\n"))
    unknown_kernel = _notebook(tmp_path / "unknown-kernel.ipynb", ["1"], kernel="no-such-kernel")
    binary_output = _notebook(tmp_path / "binary-output.ipynb",
                              ["import os, time\nos.write(1, b'\\xff\\xfe raw bytes\\n')\ntime.sleep(0.2)"])
    result = module_runner("mlops.notebooks.nb_validate", {
        "notebooks": [good, str(corrupt), str(latin1), unknown_kernel, binary_output,
                      str(tmp_path / "missing.ipynb"), str(tmp_path / "nothing-*.ipynb")],
        "golden": "stored",
        "fail_on_mismatch": False,
    })
    assert result.get("failed") is not True, result.get("msg")
    nbs = _by_name(result["notebooks"])
    assert nbs["good.ipynb"]["verdict"] == "PASS"
    for name in ("corrupt.ipynb", "latin1.ipynb", "unknown-kernel.ipynb", "missing.ipynb", "nothing-*.ipynb"):
        assert nbs[name]["verdict"] == "FAIL_ERROR", (name, nbs[name])
        assert nbs[name]["error"], name
    assert "UTF-8" in nbs["latin1.ipynb"]["error"]
    assert "no-such-kernel" in nbs["unknown-kernel.ipynb"]["error"]
    assert "missing.ipynb" in nbs["missing.ipynb"]["error"]
    # a cell that prints bytes that are not UTF-8 still runs; its output is compared as text
    assert nbs["binary-output.ipynb"]["verdict"] in ("PASS", "FAIL_OUTPUT"), nbs["binary-output.ipynb"]


def test_invalid_rule_regex_is_a_clear_error(tmp_path, module_runner):
    good = _notebook(tmp_path / "good.ipynb", ["print('fine')"],
                     [[new_output("stream", name="stdout", text="fine\n")]])
    result = module_runner("mlops.notebooks.nb_validate", {
        "notebooks": [good],
        "compare": {"rules": [{"name": "broken", "action": "replace", "pattern": "([unclosed"}]},
        "fail_on_mismatch": False,
    })
    text = json.dumps(result)
    assert "broken" in text and "Traceback" not in result.get("msg", "")
    if result.get("failed"):
        assert "broken" in result["msg"]
    else:
        assert result["notebooks"][0]["verdict"] == "FAIL_ERROR"


def test_check_mode_lists_what_would_run_and_runs_nothing(tmp_path, module_runner):
    report = tmp_path / "report.json"
    missing = str(tmp_path / "missing.ipynb")
    result = module_runner("mlops.notebooks.nb_validate", {
        "notebooks": [missing, os.path.join(EXAMPLES, "notebooks"), str(tmp_path / "none-*.ipynb")],
        "golden": os.path.join(EXAMPLES, "golden"),
        "report": {"json": str(report)},
    }, check=True)
    assert result["changed"] is False
    planned = result["planned"]
    assert planned[0] == {"path": missing, "error": "notebook not found: %s" % missing}
    assert planned[-1]["error"].startswith("no notebook matches")
    examples = {os.path.basename(p["path"]): p["golden"] for p in planned[1:-1]}
    assert set(examples) == set(EXPECTED_EXAMPLE_VERDICTS)
    assert examples["04_regression.ipynb"] == os.path.join(EXAMPLES, "golden", "04_regression.ipynb")
    assert result["summary"]["total"] == 8
    assert not report.exists()


def test_golden_directory_is_matched_by_path_relative_to_each_entry(tmp_path, module_runner):
    for side, text in (("a", "from a"), ("b", "from b")):
        source = "print(%r)" % text
        _notebook_dir = tmp_path / "nb" / side
        _notebook_dir.mkdir(parents=True)
        (tmp_path / "golden" / side).mkdir(parents=True)
        _notebook(_notebook_dir / "same.ipynb", [source])
        _notebook(tmp_path / "golden" / side / "same.ipynb", [source],
                  [[new_output("stream", name="stdout", text=text + "\n")]])
    # a stray golden with the bare file name must never be picked for either notebook
    _notebook(tmp_path / "golden" / "same.ipynb", ["print('stray')"], [[new_output("stream", name="stdout", text="stray\n")]])
    whole = module_runner("mlops.notebooks.nb_validate", {
        "notebooks": [str(tmp_path / "nb")], "golden": str(tmp_path / "golden"), "fail_on_mismatch": False})
    assert [(os.path.relpath(nb["path"], str(tmp_path)), nb["golden"], nb["verdict"]) for nb in whole["notebooks"]] == [
        ("nb/a/same.ipynb", str(tmp_path / "golden" / "a" / "same.ipynb"), "PASS"),
        ("nb/b/same.ipynb", str(tmp_path / "golden" / "b" / "same.ipynb"), "PASS"),
    ]
    # a single file entry is matched by its own file name, whatever else runs
    single = module_runner("mlops.notebooks.nb_validate", {
        "notebooks": [str(tmp_path / "nb" / "a" / "same.ipynb")], "golden": str(tmp_path / "golden" / "a"),
        "fail_on_mismatch": False})
    assert single["notebooks"][0]["verdict"] == "PASS"


def test_update_golden_rewrites_only_failing_cells_and_is_idempotent(tmp_path, module_runner):
    notebooks = tmp_path / "nb"
    golden = tmp_path / "golden"
    shutil.copytree(os.path.join(EXAMPLES, "notebooks"), notebooks)
    shutil.copytree(os.path.join(EXAMPLES, "golden"), golden)
    args = {"notebooks": [str(notebooks / "04_regression.ipynb")], "golden": str(golden), "mode": "update_golden"}
    before = nbformat.read(str(golden / "04_regression.ipynb"), as_version=4)
    first = module_runner("mlops.notebooks.nb_validate", args, diff=True)
    assert first["changed"] is True, first
    assert len(first["diff"]) == 1 and first["diff"][0]["before_header"].endswith("04_regression.ipynb")
    assert "0.912" in first["diff"][0]["before"] and "0.871" in first["diff"][0]["after"]
    after = nbformat.read(str(golden / "04_regression.ipynb"), as_version=4)
    assert after.cells[0] == before.cells[0]                   # the markdown cell is untouched
    assert "0.871" in json.dumps(after.cells[3].outputs)
    second = module_runner("mlops.notebooks.nb_validate", args)
    assert second["changed"] is False
    assert second["notebooks"][0]["verdict"] == "PASS"
    compare = module_runner("mlops.notebooks.nb_validate", dict(args, mode="compare"))
    assert compare["changed"] is False and compare["notebooks"][0]["verdict"] == "PASS"


def test_compare_only_needs_no_kernel(tmp_path, module_runner):
    executed = _notebook(tmp_path / "executed.ipynb", ["print(1)"],
                         [[new_output("stream", name="stdout", text="2\n")]], kernel="no-such-kernel")
    golden = _notebook(tmp_path / "golden.ipynb", ["print(1)"],
                       [[new_output("stream", name="stdout", text="1\n")]], kernel="no-such-kernel")
    result = module_runner("mlops.notebooks.nb_validate", {
        "notebooks": [executed], "golden": golden, "mode": "compare_only", "fail_on_mismatch": False,
    })
    assert result["notebooks"][0]["verdict"] == "FAIL_OUTPUT"
    assert "-1" in result["notebooks"][0]["cells"][0]["diff"] and "+2" in result["notebooks"][0]["cells"][0]["diff"]
