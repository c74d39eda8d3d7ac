#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: mlops.notebooks contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: nb_validate
short_description: Execute Jupyter notebooks and compare their outputs with golden outputs
version_added: 0.1.0
author:
  - mlops.notebooks maintainers (@mlops-notebooks)
description:
  - Runs each notebook with a real Jupyter kernel (nbclient), aligns its cells with a golden notebook,
    normalizes both sides the same way, compares outputs by MIME type and gives every cell a verdict.
  - A notebook's verdict is its worst cell's. Per-cell verdicts are C(PASS), C(PASS_NORMALIZED) (names
    the rules that fired), C(PASS_TOLERANT) (gives the largest numeric error), C(FAIL_OUTPUT) (with a
    minimal diff), C(FAIL_ERROR), C(FAIL_TIMEOUT), C(FAIL_KERNEL_DIED), C(NOT_RUN), C(SKIPPED),
    C(SOURCE_CHANGED), C(MISSING) and C(EXTRA).
  - A bad notebook (corrupt file, missing file, unknown kernel, invalid rule) fails on its own with a
    clear error; every other notebook still runs.
  - Writes a JSON report (versioned schema), JUnit XML (one testcase per cell), the executed notebooks
    and a self-contained HTML report with side-by-side diffs of failing cells.
  - Never reports C(changed) unless it rewrote golden files (O(mode=update_golden)).
  - Cell policies are read from tags and cell metadata, including nbval's C(NBVAL_IGNORE_OUTPUT),
    C(NBVAL_CHECK_OUTPUT), C(NBVAL_RAISES_EXCEPTION), C(NBVAL_SKIP) and nbclient's C(raises-exception)
    and C(skip-execution).
options:
  notebooks:
    description:
      - Notebook paths, directories (searched recursively for C(*.ipynb)) or glob patterns.
      - A pattern that matches nothing is reported as an error for that entry.
    type: list
    elements: str
    required: true
  golden:
    description:
      - Where the expected outputs come from.
      - A notebook path (only with a single notebook), a directory of golden notebooks, or C(stored) to compare
        with the outputs saved in each notebook itself, as nbval does.
      - With a directory, a notebook found under a directory entry of O(notebooks) has its golden at the same
        path relative to that entry (the tree is mirrored); a notebook given as a file or matched by a glob
        has its golden under its file name. Two notebooks may not share one golden file.
    type: path
    default: stored
  parameters:
    description:
      - Papermill-compatible parameters. A cell is injected after the cell tagged C(parameters),
        with values typed like the defaults there.
    type: dict
    default: {}
  kernel:
    description:
      - Kernel name. Defaults to the notebook's kernelspec, or C(python3).
    type: str
  cell_timeout:
    description:
      - Seconds one cell may run; C(0) disables the limit.
    type: float
    default: 60
  timeout:
    description:
      - Seconds the whole notebook may run (a deadline); C(0) disables it.
    type: float
    default: 600
  kernel_start_retries:
    description:
      - Extra attempts to start a kernel that failed to start.
    type: int
    default: 2
  parallel:
    description:
      - How many notebooks run at once; C(0) means the number of CPU cores.
    type: int
    default: 0
  mode:
    description:
      - C(compare) executes the notebooks and compares them with the golden outputs.
      - C(compare_only) compares already executed notebooks with the golden outputs; no kernel starts.
      - C(update_golden) executes the notebooks and rewrites the outputs of failing cells in the golden
        notebooks, leaving passing cells untouched.
    type: str
    choices: [compare, compare_only, update_golden]
    default: compare
  backend:
    description:
      - Where notebooks run. C(local) runs kernels on the host that executes the module.
    type: str
    choices: [local]
    default: local
  compare:
    description:
      - How outputs are compared.
    type: dict
    default: {}
    suboptions:
      strategy:
        description:
          - C(exact) compares outputs after structural normalization only (streams joined, carriage
            returns applied, ANSI codes and execution counts removed).
          - C(normalized) also applies the scrubbers and rules.
          - C(tolerant) also accepts numbers within O(compare.rtol) and O(compare.atol).
        type: str
        choices: [exact, normalized, tolerant]
        default: normalized
      rtol:
        description: Relative tolerance, C(|a-b| <= atol + rtol*|b|).
        type: float
        default: 0.000001
      atol:
        description: Absolute tolerance.
        type: float
        default: 0.000000001
      scrubbers:
        description:
          - Named built-in scrubbers; C(default) enables all of them (C(memory_address), C(timestamp),
            C(duration), C(uuid), C(tmp_path), C(home_path), C(progress_bar), C(warning_line)).
        type: list
        elements: str
        default: [default]
      rules:
        description:
          - User normalization rules. Each rule reports how often it fired; a rule that never fires is a warning.
        type: list
        elements: dict
        default: []
        suboptions:
          name:
            description: Name used in reports.
            type: str
            required: true
          action:
            description:
              - C(replace) substitutes O(compare.rules[].pattern) with O(compare.rules[].replacement),
                C(ignore) leaves the selected outputs out of the comparison, C(drop_lines) removes matching
                lines, C(sort_lines) sorts lines.
            type: str
            choices: [replace, ignore, drop_lines, sort_lines]
            required: true
          pattern:
            description: Regular expression (Python syntax).
            type: str
          replacement:
            description: Replacement for C(replace).
            type: str
            default: ''
          tags:
            description: Only cells with one of these tags.
            type: list
            elements: str
            default: []
          cell_ids:
            description: Only cells with one of these ids.
            type: list
            elements: str
            default: []
          indices:
            description: Only cells at these positions (0-based, all cells counted).
            type: list
            elements: int
            default: []
          mime_types:
            description: Only outputs of these MIME types.
            type: list
            elements: str
            default: []
          streams:
            description: Only these streams.
            type: list
            elements: str
            choices: [stdout, stderr]
            default: []
      image_threshold:
        description: Largest perceptual difference (0 to 1) accepted between two images.
        type: float
        default: 0.02
      max_payload_bytes:
        description: Payloads larger than this are compared by hash.
        type: int
        default: 1000000
      stderr:
        description:
          - C(compare) compares stderr like stdout, C(ignore_warnings) drops warning lines from stderr,
            C(forbid) fails a cell that writes anything to stderr.
        type: str
        choices: [compare, ignore_warnings, forbid]
        default: compare
      ignore_mime_types:
        description: MIME types left out of the comparison.
        type: list
        elements: str
        default: []
      lax:
        description:
          - Like nbval's C(--nbval-lax) mode, compare only the outputs of cells marked C(NBVAL_CHECK_OUTPUT)
            (or C(check_output) in the cell's C(nbvalidate) metadata); other cells must only run without error.
        type: bool
        default: false
  report:
    description:
      - Report files to write. Parent directories are created.
    type: dict
    default: {}
    suboptions:
      json:
        description: Path of the JSON report.
        type: path
      junit:
        description: Path of the JUnit XML report.
        type: path
      html:
        description: Path of the self-contained HTML report.
        type: path
      executed_dir:
        description: Directory that receives the executed notebooks.
        type: path
  fail_on_mismatch:
    description:
      - Fail the task when any notebook's verdict is not a pass. The results are returned either way.
    type: bool
    default: true
requirements:
  - nbclient
  - nbformat
  - ipykernel (or another kernel)
  - Pillow (optional, perceptual image comparison)
notes:
  - Check mode lists the notebooks that would run and their golden sources, and runs nothing.
  - With C(--diff) and O(mode=update_golden), the result shows each rewritten golden file before and after.
seealso:
  - name: nbclient
    description: The library that executes the notebooks.
    link: https://nbclient.readthedocs.io/
"""

EXAMPLES = r"""
- name: Validate the example notebooks against their golden copies
  mlops.notebooks.nb_validate:
    notebooks:
      - "{{ playbook_dir }}/../examples/notebooks"
    golden: "{{ playbook_dir }}/../examples/golden"
    compare:
      strategy: tolerant
      rtol: 0.001
    report:
      json: /tmp/nb-report/report.json
      junit: /tmp/nb-report/junit.xml
      html: /tmp/nb-report/report.html
      executed_dir: /tmp/nb-report/executed
  register: validation

- name: Compare with the outputs stored in the notebook itself, as nbval does
  mlops.notebooks.nb_validate:
    notebooks: ["analysis/*.ipynb"]
    golden: stored
    parameters:
      sample_size: 100
    cell_timeout: 120
    timeout: 900

- name: Ignore a volatile output and sort unordered prints
  mlops.notebooks.nb_validate:
    notebooks: [report.ipynb]
    golden: golden/report.ipynb
    compare:
      rules:
        - name: run-id
          action: replace
          pattern: "run-[0-9a-f]{8}"
          replacement: "run-<id>"
        - name: set-order
          action: sort_lines
          tags: [unordered]
    fail_on_mismatch: false

- name: Accept the current outputs of failing cells as the new golden outputs
  mlops.notebooks.nb_validate:
    notebooks: [report.ipynb]
    golden: golden/report.ipynb
    mode: update_golden
"""

RETURN = r"""
summary:
  description:
    - Counts over the notebooks.
    - In check mode nothing runs, so only C(total) (the notebooks planned) is meaningful.
  returned: always
  type: dict
  contains:
    total:
      description: Number of notebooks.
      type: int
    passed:
      description: Notebooks whose verdict is a pass (or all cells skipped).
      type: int
    failed:
      description: Notebooks that did not pass.
      type: int
    verdicts:
      description: Number of notebooks per verdict.
      type: dict
  sample: {"total": 2, "passed": 1, "failed": 1, "verdicts": {"PASS": 1, "FAIL_OUTPUT": 1}}
notebooks:
  description:
    - One entry per notebook, in the order given. An entry that matched no notebook is listed
      with verdict C(FAIL_ERROR) and an C(error).
    - The normalized outputs of each cell are left out here; the JSON report has them.
  returned: always
  type: list
  elements: dict
  contains:
    path:
      description: Notebook path.
      type: str
    golden:
      description: Golden notebook path, or C(stored).
      type: str
    verdict:
      description: The worst cell verdict, or C(FAIL_ERROR) for a notebook-level error.
      type: str
    error:
      description: Notebook-level error (unreadable file, unknown kernel, invalid rule).
      type: str
    counts:
      description: Number of cells per verdict.
      type: dict
    executed_path:
      description: Where the executed notebook was written.
      type: str
    golden_written:
      description: Whether O(mode=update_golden) rewrote this notebook's golden file.
      type: bool
    warnings:
      description: For example normalization rules that never fired.
      type: list
      elements: str
    cells:
      description: Per-cell results.
      type: list
      elements: dict
      contains:
        index:
          description: Position in the executed notebook.
          type: int
        golden_index:
          description: Position in the golden notebook.
          type: int
        cell_id:
          description: Cell id.
          type: str
        verdict:
          description: Cell verdict.
          type: str
        message:
          description: Why, in words.
          type: str
        rules_fired:
          description: Normalization rules and scrubbers that changed this cell's outputs, with counts.
          type: dict
        max_error:
          description: Largest numeric deviation seen in a tolerant comparison.
          type: float
        diff:
          description: Minimal unified diff of the normalized outputs of a failing cell.
          type: str
  sample:
    - path: /srv/nb/analysis.ipynb
      golden: /srv/golden/analysis.ipynb
      verdict: PASS_TOLERANT
      counts: {"PASS": 3, "PASS_TOLERANT": 1}
      cells:
        - {"index": 3, "cell_id": "fit", "verdict": "PASS_TOLERANT", "max_error": 2.1e-07}
reports:
  description: Paths of the reports written.
  returned: always
  type: dict
  sample: {"json": /tmp/nb-report/report.json, "html": /tmp/nb-report/report.html}
planned:
  description:
    - In check mode, the notebooks that would run and their golden sources, in the order given.
    - An entry that matches no notebook, or a notebook that does not exist, carries C(error) instead of C(golden).
  returned: check mode
  type: list
  elements: dict
  sample: [{"path": /srv/nb/analysis.ipynb, "golden": stored}, {"path": "missing/*.ipynb", "error": "no notebook matches"}]
duration:
  description: Seconds the run took.
  returned: success
  type: float
"""

import os
import traceback

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.mlops.notebooks.plugins.module_utils.notebook_args import (
    NB_VALIDATE_ARG_SPEC,
    build_validate_options,
    expand_notebook_entries,
)

try:
    from ansible_collections.mlops.notebooks.plugins.module_utils.notebook import validate as engine
    from ansible_collections.mlops.notebooks.plugins.module_utils.notebook import reports
    from ansible_collections.mlops.notebooks.plugins.module_utils.notebook.model import (
        EngineError,
        NotebookResult,
        Verdict,
    )

    ENGINE_IMPORT_ERROR = None
except ImportError:  # pragma: no cover - reported through missing_required_lib
    ENGINE_IMPORT_ERROR = traceback.format_exc()


def _missing_engine_libraries():
    """Names of the third-party libraries the engine needs that are not importable."""
    missing = []
    for name in ("nbformat", "nbclient", "jupyter_client"):
        try:
            __import__(name)
        except ImportError:
            missing.append(name)
    return missing


def _golden_sources(entries, golden):
    """The golden argument for the engine: "stored", one file, or {notebook: golden file}."""
    if golden == "stored" or not os.path.isdir(golden):
        return golden
    found = [(e.path, e.root) for e in entries if e.path and not e.error]
    return engine.golden_map(found, os.path.abspath(golden))


def _read_text(path):
    try:
        with open(path, "rb") as handle:
            return handle.read().decode("utf-8", errors="replace")
    except OSError:
        return ""


def main():
    module = AnsibleModule(argument_spec=NB_VALIDATE_ARG_SPEC, supports_check_mode=True)

    if ENGINE_IMPORT_ERROR:
        module.fail_json(msg="The notebook engine could not be imported", exception=ENGINE_IMPORT_ERROR)
    missing = _missing_engine_libraries()
    if missing:
        module.fail_json(msg=missing_required_lib(", ".join(missing)))

    params = module.params
    try:
        options = build_validate_options(params)
    except (EngineError, ValueError) as exc:
        module.fail_json(msg="Invalid options: %s" % exc)

    entries = expand_notebook_entries(params["notebooks"], params["golden"])
    golden = _golden_sources(entries, params["golden"])
    runnable = [e.path for e in entries if e.path and not e.error]

    if module.check_mode:
        planned = []
        for entry in entries:
            item = {"path": entry.path or entry.entry}
            if entry.error:
                item["error"] = entry.error
            else:
                item["golden"] = engine.golden_for(entry.path, runnable, golden)
            planned.append(item)
        module.exit_json(changed=False, planned=planned, notebooks=[], reports={},
                         summary={"total": len(planned), "passed": 0, "failed": 0, "verdicts": {}})

    golden_before = {}
    if params["mode"] == "update_golden" and module._diff:
        for path in runnable:
            target = engine.golden_for(path, runnable, golden)
            golden_before[path] = (target, _read_text(target))

    run = engine.validate_notebooks(runnable, golden, options)
    by_path = {nb.path: nb for nb in run.notebooks}
    ordered = []
    for entry in entries:
        if entry.error:
            ordered.append(NotebookResult(path=entry.path or entry.entry, verdict=Verdict.FAIL_ERROR, error=entry.error))
        else:
            ordered.append(by_path[entry.path])
    run.notebooks = ordered

    report_opts = params["report"] or {}
    try:
        written = reports.write_reports(
            run,
            json_path=report_opts.get("json"),
            junit_path=report_opts.get("junit"),
            html_path=report_opts.get("html"),
        )
    except (OSError, EngineError) as exc:
        module.fail_json(msg="Could not write the reports: %s" % exc)
    if report_opts.get("executed_dir"):
        written["executed_dir"] = os.path.abspath(report_opts["executed_dir"])

    # the module result leaves out the normalized outputs; the JSON report has them
    result = run.to_dict(include_outputs=False)
    summary = result["summary"]
    changed = any(nb.golden_written for nb in run.notebooks)
    warnings = sorted({w for nb in run.notebooks for w in nb.warnings})
    for warning in warnings:
        module.warn(warning)

    outcome = dict(
        changed=changed,
        summary=summary,
        notebooks=result["notebooks"],
        reports=written,
        duration=result["duration"],
        schema_version=result["schema_version"],
    )
    if golden_before:
        outcome["diff"] = [
            dict(before=before, after=_read_text(target), before_header=target, after_header=target)
            for path, (target, before) in golden_before.items()
            if by_path.get(path) is not None and by_path[path].golden_written
        ]
    if params["fail_on_mismatch"] and summary["failed"] and params["mode"] != "update_golden":
        failing = ["%s: %s%s" % (nb.path, nb.verdict.value, " (%s)" % nb.error if nb.error else "")
                   for nb in run.notebooks if not nb.verdict.passed]
        module.fail_json(msg="%d of %d notebooks did not pass: %s" % (summary["failed"], summary["total"], "; ".join(failing)),
                         **outcome)
    module.exit_json(**outcome)


if __name__ == "__main__":
    main()
