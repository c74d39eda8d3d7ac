# -*- coding: utf-8 -*-
# Copyright: mlops.notebooks contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Reports of one validation run: JSON (versioned schema), JUnit XML and self-contained HTML.

Every report is built from a :class:`RunResult` only. Outputs are untrusted text (a notebook
can print anything), so everything is escaped, characters that XML 1.0 or HTML cannot carry are
made visible as ``\\xNN``, and the HTML page loads nothing from anywhere: inline CSS and a small
inline script, both pinned by hash in a Content-Security-Policy that forbids everything else.
Files are written atomically (temporary file in the same directory, then rename).
"""

from __future__ import annotations

import base64
import datetime
import difflib
import enum
import hashlib
import html
import json
import math
import os
import re
import tempfile
import xml.etree.ElementTree as ET
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

from .model import REPORT_SCHEMA_VERSION, CellResult, EngineError, NotebookResult, RunResult, Verdict, worst

PathLike = Union[str, "os.PathLike[str]"]

# Verdicts that make a JUnit <failure> (every verdict that is neither passing nor SKIPPED).
FAILING_VERDICTS = tuple(v for v in Verdict if not v.passed)
# Non-finite floats are not JSON: they are written as these strings (allowed by the schema).
NON_FINITE_STRINGS = ("NaN", "Infinity", "-Infinity")

MAX_TEXT_CHARS = 200_000       # per <pre> block in HTML; the JSON report always has everything
MAX_DIFF_LINES = 3_000         # per side of a side-by-side diff
DIFF_CONTEXT = 3               # unchanged lines shown around a change
MAX_INLINE_IMAGE_CHARS = 2_000_000
INLINE_IMAGE_TYPES = ("image/png", "image/jpeg", "image/gif")


class ReportError(EngineError):
    """A report could not be written (unwritable path, full disk...)."""


# ============================================================================ JSON Schema

_VERDICT_VALUES = [v.value for v in Verdict]
_NUMBER_OR_NULL = {"anyOf": [{"type": "number"}, {"type": "null"}, {"enum": list(NON_FINITE_STRINGS)}]}
_STRING_OR_NULL = {"type": ["string", "null"]}
_RULE_COUNTS = {"type": "object", "additionalProperties": {"type": "integer", "minimum": 0}}

# Describes RunResult.to_dict(). Readers of a 1.x report must tolerate properties added later
# (additionalProperties is left open); a change that removes or retypes a field bumps the major.
REPORT_JSON_SCHEMA: Dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "urn:mlops-notebooks:validation-report:" + REPORT_SCHEMA_VERSION,
    "title": "mlops.notebooks validation report",
    "type": "object",
    "required": ["schema_version", "summary", "duration", "notebooks"],
    "properties": {
        "schema_version": {"const": REPORT_SCHEMA_VERSION},
        "summary": {
            "type": "object",
            "required": ["total", "passed", "failed", "verdicts"],
            "properties": {
                "total": {"type": "integer", "minimum": 0},
                "passed": {"type": "integer", "minimum": 0},
                "failed": {"type": "integer", "minimum": 0},
                "verdicts": {
                    "type": "object",
                    "required": _VERDICT_VALUES,
                    "properties": {v: {"type": "integer", "minimum": 0} for v in _VERDICT_VALUES},
                    "additionalProperties": False,
                },
            },
        },
        "duration": _NUMBER_OR_NULL,
        "notebooks": {"type": "array", "items": {"$ref": "#/$defs/notebook"}},
    },
    "$defs": {
        "verdict": {"enum": _VERDICT_VALUES},
        "error": {
            "anyOf": [
                {"type": "null"},
                {
                    "type": "object",
                    "properties": {
                        "ename": {"type": "string"},
                        "evalue": {"type": "string"},
                        "traceback": {"type": "array", "items": {"type": "string"}},
                    },
                },
            ]
        },
        "notebook": {
            "type": "object",
            "required": ["path", "verdict", "cells", "error", "counts"],
            "properties": {
                "path": {"type": "string"},
                "verdict": {"$ref": "#/$defs/verdict"},
                "golden": _STRING_OR_NULL,
                "cells": {"type": "array", "items": {"$ref": "#/$defs/cell"}},
                "error": _STRING_OR_NULL,
                "kernel": _STRING_OR_NULL,
                "kernel_stderr": {"type": "string"},
                "kernel_start_seconds": _NUMBER_OR_NULL,
                "duration": _NUMBER_OR_NULL,
                "executed_path": _STRING_OR_NULL,
                "golden_written": {"type": "boolean"},
                "warnings": {"type": "array", "items": {"type": "string"}},
                "rules_fired": _RULE_COUNTS,
                "counts": {
                    "type": "object",
                    "propertyNames": {"enum": _VERDICT_VALUES},
                    "additionalProperties": {"type": "integer", "minimum": 1},
                },
            },
        },
        "cell": {
            "type": "object",
            "required": ["index", "golden_index", "cell_id", "verdict"],
            "properties": {
                "index": {"type": ["integer", "null"], "minimum": 0},
                "golden_index": {"type": ["integer", "null"], "minimum": 0},
                "cell_id": _STRING_OR_NULL,
                "verdict": {"$ref": "#/$defs/verdict"},
                "matched_by": {"enum": ["id", "source", "position", None]},
                "message": {"type": "string"},
                "rules_fired": _RULE_COUNTS,
                "max_error": _NUMBER_OR_NULL,
                "diff": {"type": "string"},
                "expected": {"type": "array", "items": {"type": "object"}},
                "actual": {"type": "array", "items": {"type": "object"}},
                "source": {"type": "string"},
                "duration": _NUMBER_OR_NULL,
                "error": {"$ref": "#/$defs/error"},
            },
        },
    },
}


# ============================================================================ text helpers

# CSI sequences (colours, cursor moves), OSC sequences (titles, hyperlinks), and lone 2-byte escapes.
_ANSI_RE = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_]")
# Characters XML 1.0 cannot carry at all (even as references); HTML treats most as parse errors.
_FORBIDDEN_CHARS_RE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff\ufffe\uffff]")


def strip_ansi(text: str) -> str:
    """``text`` without ANSI escape sequences (IPython colours its tracebacks)."""
    return _ANSI_RE.sub("", text)


def _visible_char(match: "re.Match[str]") -> str:
    code = ord(match.group(0))
    return "\\x%02x" % code if code < 0x100 else "\\u%04x" % code


def clean_text(text: Any) -> str:
    """Text safe for XML 1.0 and HTML: ANSI removed, forbidden characters shown as ``\\xNN``."""
    if text is None:
        return ""
    if not isinstance(text, str):
        text = str(text)
    return _FORBIDDEN_CHARS_RE.sub(_visible_char, strip_ansi(text))


def _join_multiline(value: Any) -> str:
    # nbformat allows multi-line strings stored as lists of lines.
    if isinstance(value, list):
        return "".join(str(part) for part in value)
    return "" if value is None else str(value)


def _is_text_mime(mime: str) -> bool:
    return mime.startswith("text/") or mime.endswith("+xml") or "javascript" in mime


def _is_json_mime(mime: str) -> bool:
    return mime == "application/json" or mime.endswith("+json")


def _mime_text(mime: str, value: Any) -> str:
    if _is_json_mime(mime) and not isinstance(value, str):
        return json.dumps(value, indent=1, sort_keys=True, ensure_ascii=False, default=str)
    if _is_text_mime(mime) or _is_json_mime(mime):
        return _join_multiline(value)
    # Binary payloads are base64 in notebooks: show size and a digest, enough to see a change.
    payload = _join_multiline(value)
    digest = hashlib.sha256(payload.encode("utf-8", "replace")).hexdigest()[:16]
    return "<%s: %d base64 characters, sha256 %s>" % (mime, len(payload), digest)


def _error_text(error: Mapping[str, Any]) -> str:
    traceback = error.get("traceback") or []
    if isinstance(traceback, str):
        traceback = [traceback]
    body = "\n".join(strip_ansi(str(line)) for line in traceback)
    head = "%s: %s" % (error.get("ename", ""), error.get("evalue", ""))
    if not body:
        return head
    # IPython's traceback already ends with "ename: evalue"; do not print it twice.
    return body if body.rstrip().endswith(head.strip()) else head + "\n" + body


def output_text(output: Mapping[str, Any]) -> List[str]:
    """Lines that stand for one output in diffs: a ``[kind]`` header line, then the content."""
    kind = output.get("output_type", "?")
    lines: List[str] = []
    if kind == "stream":
        lines.append("[%s]" % output.get("name", "stream"))
        lines.extend(_join_multiline(output.get("text")).splitlines())
    elif kind in ("execute_result", "display_data", "update_display_data"):
        data = output.get("data") or {}
        for mime, value in data.items():
            lines.append("[%s %s]" % (kind, mime))
            lines.extend(_mime_text(mime, value).splitlines())
        if not data:
            lines.append("[%s]" % kind)
    elif kind == "error":
        lines.append("[error]")
        lines.extend(_error_text(output).splitlines())
    else:
        lines.append("[%s]" % kind)
        lines.extend(json.dumps(dict(output), indent=1, sort_keys=True, default=str).splitlines())
    return lines


def outputs_text(outputs: Sequence[Mapping[str, Any]]) -> List[str]:
    """The text form of a list of outputs, one string per line (what the diffs compare)."""
    lines: List[str] = []
    for output in outputs or ():
        lines.extend(output_text(output))
    return lines


def error_text(error: Optional[Mapping[str, Any]]) -> str:
    """A cell error (``{ename, evalue, traceback}``) as plain text, ANSI removed."""
    return _error_text(error) if error else ""


def cell_name(cell: CellResult) -> str:
    """The name of a cell in reports: its id, else ``cell-<index>`` (``golden-cell-<i>`` if MISSING)."""
    if cell.cell_id:
        return cell.cell_id
    if cell.index is not None:
        return "cell-%d" % cell.index
    if cell.golden_index is not None:
        return "golden-cell-%d" % cell.golden_index
    return "cell-?"


def _format_seconds(seconds: Optional[float]) -> str:
    if seconds is None or not math.isfinite(seconds):
        return ""
    if seconds < 60:
        return "%.2f s" % seconds
    minutes, rest = divmod(seconds, 60)
    return "%d min %.0f s" % (minutes, rest)


def _format_rules(rules: Mapping[str, int]) -> str:
    return ", ".join("%s \u00d7%d" % (name, count) for name, count in sorted(rules.items()))


def _format_error_value(value: Optional[float]) -> str:
    return "n/a" if value is None else "%.3g" % value


# ============================================================================ writing files


def _write_text_atomic(path: PathLike, text: str) -> str:
    target = os.path.abspath(os.fspath(path))
    directory = os.path.dirname(target)
    try:
        os.makedirs(directory, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".%s." % os.path.basename(target), suffix=".tmp", dir=directory)
        try:
            with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
                handle.write(text)
            os.chmod(tmp, 0o644)
            os.replace(tmp, target)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
    except OSError as err:
        raise ReportError("cannot write report %s: %s" % (target, err.strerror or err)) from None
    return target


# ============================================================================ JSON


def _json_safe(value: Any) -> Any:
    """Plain JSON data: non-finite floats as strings, lone surrogates replaced, tuples as lists."""
    if isinstance(value, bool) or value is None or isinstance(value, int):
        return value
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "Infinity" if value > 0 else "-Infinity"
        return value
    if isinstance(value, str):
        # Lone surrogates (undecodable bytes) cannot be written as UTF-8.
        return _SURROGATE_RE.sub("\ufffd", value)
    if isinstance(value, enum.Enum):
        return _json_safe(value.value)
    if isinstance(value, Mapping):
        return {str(key): _json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_json_safe(item) for item in value]
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    # Anything else (should not occur: results come from JSON notebooks) is written as text
    # rather than losing the whole report at the end of a run.
    return str(value)


_SURROGATE_RE = re.compile("[\ud800-\udfff]")


def report_dict(run: RunResult) -> Dict[str, Any]:
    """The JSON report as data (``RunResult.to_dict()``, made strictly JSON-safe)."""
    return _json_safe(run.to_dict())


def write_json(run: RunResult, path: PathLike) -> str:
    """Write the JSON report (schema :data:`REPORT_JSON_SCHEMA`); returns the absolute path."""
    text = json.dumps(report_dict(run), indent=2, ensure_ascii=False, allow_nan=False)
    return _write_text_atomic(path, text + "\n")


# ============================================================================ JUnit XML


def _seconds_attr(seconds: Optional[float]) -> str:
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return "0.000"
    return "%.3f" % seconds


def _failure_body(cell: CellResult) -> str:
    parts: List[str] = []
    if cell.diff:
        parts.append(cell.diff)
    elif cell.expected or cell.actual:
        parts.append(
            "\n".join(
                difflib.unified_diff(
                    outputs_text(cell.expected), outputs_text(cell.actual), "expected", "actual", lineterm=""
                )
            )
        )
    if cell.error:
        parts.append(error_text(cell.error))
    if not parts and cell.message:
        parts.append(cell.message)
    return "\n\n".join(part for part in parts if part)


def _cell_testcase(suite: ET.Element, notebook: NotebookResult, cell: CellResult) -> None:
    case = ET.SubElement(
        suite,
        "testcase",
        {"classname": clean_text(notebook.path), "name": clean_text(cell_name(cell)), "time": _seconds_attr(cell.duration)},
    )
    if cell.verdict == Verdict.SKIPPED:
        ET.SubElement(case, "skipped", {"message": clean_text(cell.message or "skipped by policy")})
    elif not cell.verdict.passed:
        message = cell.verdict.value + (": " + cell.message if cell.message else "")
        failure = ET.SubElement(case, "failure", {"message": clean_text(message), "type": cell.verdict.value})
        failure.text = clean_text(_failure_body(cell))
    elif cell.verdict == Verdict.PASS_NORMALIZED and cell.rules_fired:
        ET.SubElement(case, "system-out").text = clean_text("normalized by: " + _format_rules(cell.rules_fired))
    elif cell.verdict == Verdict.PASS_TOLERANT:
        ET.SubElement(case, "system-out").text = "within tolerance, max error %s" % _format_error_value(cell.max_error)


def _notebook_suite(parent: ET.Element, notebook: NotebookResult) -> Dict[str, int]:
    counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    suite = ET.SubElement(parent, "testsuite", {"name": clean_text(notebook.path)})
    properties = ET.SubElement(suite, "properties")
    for name, value in (
        ("verdict", notebook.verdict.value),
        ("golden", notebook.golden),
        ("kernel", notebook.kernel),
        ("executed_path", notebook.executed_path),
    ):
        if value:
            ET.SubElement(properties, "property", {"name": name, "value": clean_text(value)})
    if notebook.error:
        case = ET.SubElement(
            suite,
            "testcase",
            {"classname": clean_text(notebook.path), "name": "(notebook)", "time": _seconds_attr(notebook.duration)},
        )
        first_line = notebook.error.strip().splitlines()[0] if notebook.error.strip() else "notebook error"
        error = ET.SubElement(case, "error", {"message": clean_text(first_line), "type": "NotebookError"})
        body = notebook.error
        if notebook.kernel_stderr:
            body += "\n\nkernel stderr:\n" + notebook.kernel_stderr
        error.text = clean_text(body)
        counts["tests"] += 1
        counts["errors"] += 1
    for cell in notebook.cells:
        _cell_testcase(suite, notebook, cell)
        counts["tests"] += 1
        if cell.verdict == Verdict.SKIPPED:
            counts["skipped"] += 1
        elif not cell.verdict.passed:
            counts["failures"] += 1
    if notebook.warnings:
        ET.SubElement(suite, "system-err").text = clean_text("\n".join(notebook.warnings))
    seconds = notebook.duration
    if seconds is None:
        seconds = sum(c.duration for c in notebook.cells if c.duration is not None and math.isfinite(c.duration))
    for key, value in counts.items():
        suite.set(key, str(value))
    suite.set("time", _seconds_attr(seconds))
    # Attribute order is insertion order: put name first for people reading the file.
    suite.attrib = {"name": suite.attrib.pop("name"), **suite.attrib}
    return counts


def junit_tree(run: RunResult) -> ET.Element:
    """The JUnit XML document as an element tree (``<testsuites>``, one suite per notebook)."""
    root = ET.Element("testsuites", {"name": "notebook validation"})
    totals = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    for notebook in run.notebooks:
        for key, value in _notebook_suite(root, notebook).items():
            totals[key] += value
    for key, value in totals.items():
        root.set(key, str(value))
    seconds = run.duration
    if seconds is None:
        seconds = sum(nb.duration for nb in run.notebooks if nb.duration is not None and math.isfinite(nb.duration))
    root.set("time", _seconds_attr(seconds))
    return root


def write_junit(run: RunResult, path: PathLike) -> str:
    """Write the JUnit XML report; returns the absolute path."""
    root = junit_tree(run)
    ET.indent(root, space="  ")
    text = '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
    return _write_text_atomic(path, text)


# ============================================================================ HTML

_CSS = """
:root{--fg:#1f2328;--muted:#59636e;--line:#d1d9e0;--bg:#fff;--soft:#f6f8fa;
--ok:#1a7f37;--norm:#0969da;--skip:#6e7781;--warn:#9a6700;--bad:#cf222e;--dead:#82071e;
--del:#ffebe9;--delx:#ffc1bc;--add:#e6ffec;--addx:#abf2bc}
*{box-sizing:border-box}
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;color:var(--fg);
background:var(--bg);margin:0;padding:20px 28px 60px}
h1{font-size:22px;margin:0 0 6px}h2{font-size:17px;margin:28px 0 8px;word-break:break-all}
h3{font-size:13px;margin:12px 0 4px;color:var(--muted);text-transform:uppercase;letter-spacing:.04em}
.meta{color:var(--muted);margin:2px 0}.meta b{color:var(--fg)}
table{border-collapse:collapse}
.summary{margin:14px 0;min-width:60%}.summary th,.summary td{border:1px solid var(--line);padding:5px 9px;
text-align:left;vertical-align:top}.summary th{background:var(--soft)}
.summary a{color:var(--norm);text-decoration:none;overflow-wrap:break-word}
.badge{display:inline-block;padding:1px 7px;border-radius:10px;font:600 11px/17px ui-monospace,monospace;
color:#fff;white-space:nowrap;margin-right:4px}
.v-PASS{background:var(--ok)}.v-PASS_NORMALIZED,.v-PASS_TOLERANT{background:var(--norm)}
.v-SKIPPED{background:var(--skip)}.v-NOT_RUN,.v-EXTRA,.v-MISSING,.v-SOURCE_CHANGED{background:var(--warn)}
.v-FAIL_OUTPUT,.v-FAIL_ERROR,.v-FAIL_TIMEOUT{background:var(--bad)}.v-FAIL_KERNEL_DIED{background:var(--dead)}
.count{font-size:12px;margin-right:8px;white-space:nowrap}
.notebook{border-top:2px solid var(--line);margin-top:24px}
.nb-error{border:2px solid var(--bad);background:var(--del);padding:8px 12px;border-radius:6px;margin:8px 0}
.nb-error strong{color:var(--bad)}
.warnings{background:#fff8c5;border:1px solid #d4a72c;padding:6px 12px;border-radius:6px}
details.cell{border:1px solid var(--line);border-radius:6px;margin:6px 0;background:var(--bg)}
details.cell.failed{border-color:var(--bad)}
details.cell>summary{cursor:pointer;padding:6px 10px;background:var(--soft);border-radius:6px;list-style-position:inside}
details.cell[open]>summary{border-bottom:1px solid var(--line);border-radius:6px 6px 0 0}
.cellname{font-family:ui-monospace,monospace;font-weight:600}.short{color:var(--muted);margin-left:8px}
.body{padding:4px 12px 10px}
pre{background:var(--soft);border:1px solid var(--line);border-radius:4px;padding:8px;margin:4px 0;
white-space:pre-wrap;word-break:break-all;font:12px/1.4 ui-monospace,"DejaVu Sans Mono",monospace;max-height:480px;overflow:auto}
pre.tb{background:var(--del)}
.sxs{width:100%;table-layout:fixed;font:12px/1.4 ui-monospace,"DejaVu Sans Mono",monospace;border:1px solid var(--line)}
.sxs col.n{width:3.2em}.sxs th{background:var(--soft);text-align:left;padding:3px 6px;font-family:system-ui,sans-serif}
.sxs td{padding:0 6px;white-space:pre-wrap;word-break:break-all;vertical-align:top}
.sxs td.n{color:var(--muted);text-align:right;user-select:none;border-right:1px solid var(--line)}
.sxs td.del{background:var(--del)}.sxs td.add{background:var(--add)}
.sxs td.del mark{background:var(--delx);color:inherit}.sxs td.add mark{background:var(--addx);color:inherit}
.sxs td.gap{background:#f0f3f6;color:var(--muted);text-align:center;font-style:italic}
.sxs td.none{background:#fafbfc}
.images{display:flex;gap:16px;flex-wrap:wrap}.images figure{margin:4px 0}.images img{max-width:420px;border:1px solid var(--line)}
.udiff .d{color:var(--bad)}.udiff .a{color:var(--ok)}
.controls{display:none;margin:8px 0}.js .controls{display:block}
.controls button{font:inherit;margin-right:6px}
body.failing-only details.cell.passed,body.failing-only section.notebook.passed{display:none}
"""

_JS = """
document.documentElement.classList.add('js');
document.addEventListener('DOMContentLoaded', function () {
  var cells = function () { return document.querySelectorAll('details.cell'); };
  document.getElementById('expand-all').addEventListener('click', function () {
    cells().forEach(function (d) { d.open = true; });
  });
  document.getElementById('collapse-all').addEventListener('click', function () {
    cells().forEach(function (d) { d.open = false; });
  });
  document.getElementById('failing-only').addEventListener('change', function (e) {
    document.body.classList.toggle('failing-only', e.target.checked);
  });
});
"""


def _csp_hash(text: str) -> str:
    return "'sha256-%s'" % base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii")


# Only our own inline style and script (pinned by hash) and data: images may load: no network,
# and a script that slipped into the page some other way would not run.
_CSP = "default-src 'none'; img-src data:; style-src %s; script-src %s; base-uri 'none'; form-action 'none'" % (
    _csp_hash(_CSS),
    _csp_hash(_JS),
)


def _esc(text: Any) -> str:
    return html.escape(clean_text(text), quote=True)


def _esc_limited(text: str) -> str:
    if len(text) > MAX_TEXT_CHARS:
        rest = len(text) - MAX_TEXT_CHARS
        return _esc(text[:MAX_TEXT_CHARS]) + "\n\u2026 %d more characters (see the JSON report)" % rest
    return _esc(text)


def _badge(verdict: Verdict) -> str:
    return '<span class="badge v-%s">%s</span>' % (verdict.value, verdict.value)


def _intraline(left: str, right: str) -> Tuple[str, str]:
    """Both lines escaped, with the characters that differ wrapped in <mark>."""
    matcher = difflib.SequenceMatcher(None, left, right, autojunk=False)
    out_left: List[str] = []
    out_right: List[str] = []
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        a, b = _esc(left[i1:i2]), _esc(right[j1:j2])
        if tag == "equal":
            out_left.append(a)
            out_right.append(b)
            continue
        if a:
            out_left.append("<mark>%s</mark>" % a)
        if b:
            out_right.append("<mark>%s</mark>" % b)
    return "".join(out_left), "".join(out_right)


def _row(left_no: Optional[int], left: Optional[str], left_cls: str,
         right_no: Optional[int], right: Optional[str], right_cls: str) -> str:
    def half(number: Optional[int], content: Optional[str], cls: str) -> str:
        if content is None:
            return '<td class="n"></td><td class="none"></td>'
        return '<td class="n">%d</td><td class="%s">%s</td>' % (number, cls, content)

    return "<tr>%s%s</tr>" % (half(left_no, left, left_cls), half(right_no, right, right_cls))


def _gap_row(count: int) -> str:
    return '<tr><td class="n"></td><td class="gap" colspan="3">\u22ef %d unchanged line%s \u22ef</td></tr>' % (
        count,
        "" if count == 1 else "s",
    )


def side_by_side(expected: Sequence[str], actual: Sequence[str], context: int = DIFF_CONTEXT) -> str:
    """An HTML table: expected lines left, actual right, changed lines highlighted (difflib)."""
    notes = []
    if len(expected) > MAX_DIFF_LINES or len(actual) > MAX_DIFF_LINES:
        notes.append("only the first %d lines of each side are shown" % MAX_DIFF_LINES)
        expected, actual = expected[:MAX_DIFF_LINES], actual[:MAX_DIFF_LINES]
    opcodes = difflib.SequenceMatcher(None, list(expected), list(actual), autojunk=False).get_opcodes()
    rows: List[str] = []
    for position, (tag, i1, i2, j1, j2) in enumerate(opcodes):
        if tag == "equal":
            first, last = position == 0, position == len(opcodes) - 1
            head = 0 if first else context
            tail = 0 if last else context
            length = i2 - i1
            if head + tail >= length:
                shown = [(k, True) for k in range(length)]
            else:
                shown = [(k, True) for k in range(head)] + [(-1, False)] + [(k, True) for k in range(length - tail, length)]
            for k, visible in shown:
                if not visible:
                    rows.append(_gap_row(length - head - tail))
                    continue
                text = _esc(expected[i1 + k])
                rows.append(_row(i1 + k + 1, text, "ctx", j1 + k + 1, text, "ctx"))
            continue
        left_lines = list(range(i1, i2))
        right_lines = list(range(j1, j2))
        for k in range(max(len(left_lines), len(right_lines))):
            li = left_lines[k] if k < len(left_lines) else None
            ri = right_lines[k] if k < len(right_lines) else None
            if li is not None and ri is not None:
                left_html, right_html = _intraline(expected[li], actual[ri])
                rows.append(_row(li + 1, left_html, "del", ri + 1, right_html, "add"))
            elif li is not None:
                rows.append(_row(li + 1, _esc(expected[li]), "del", None, None, ""))
            else:
                rows.append(_row(None, None, "", ri + 1, _esc(actual[ri]), "add"))
    note = "".join('<p class="meta">%s</p>' % _esc(n) for n in notes)
    return (
        '%s<table class="sxs"><colgroup><col class="n"><col><col class="n"><col></colgroup>'
        '<thead><tr><th colspan="2">expected (golden)</th><th colspan="2">actual</th></tr></thead>'
        "<tbody>%s</tbody></table>" % (note, "".join(rows))
    )


def _unified_diff_html(diff: str) -> str:
    lines = []
    for line in diff.splitlines():
        cls = "a" if line.startswith("+") and not line.startswith("+++") else (
            "d" if line.startswith("-") and not line.startswith("---") else "")
        lines.append('<span class="%s">%s</span>' % (cls, _esc(line)) if cls else _esc(line))
    return '<pre class="udiff">%s</pre>' % "\n".join(lines)


_BASE64_RE = re.compile(r"^[A-Za-z0-9+/=\s]*$")


def _images(outputs: Sequence[Mapping[str, Any]]) -> Iterator[Tuple[str, str]]:
    for output in outputs or ():
        data = output.get("data") if isinstance(output, Mapping) else None
        if not isinstance(data, Mapping):
            continue
        for mime in INLINE_IMAGE_TYPES:
            payload = _join_multiline(data.get(mime)) if mime in data else ""
            if payload and len(payload) <= MAX_INLINE_IMAGE_CHARS and _BASE64_RE.match(payload):
                yield mime, "".join(payload.split())


def _image_comparison(cell: CellResult) -> str:
    expected, actual = list(_images(cell.expected)), list(_images(cell.actual))
    if not expected and not actual:
        return ""
    figures = []
    for label, images in (("expected", expected), ("actual", actual)):
        for number, (mime, payload) in enumerate(images, 1):
            figures.append(
                '<figure><img alt="%s image %d" src="data:%s;base64,%s"><figcaption>%s image %d</figcaption></figure>'
                % (label, number, mime, payload, label, number)
            )
    return '<h3>images</h3><div class="images">%s</div>' % "".join(figures)


def _cell_short(cell: CellResult) -> str:
    if cell.verdict == Verdict.PASS_NORMALIZED and cell.rules_fired:
        return "normalized: " + _format_rules(cell.rules_fired)
    if cell.verdict == Verdict.PASS_TOLERANT:
        return "within tolerance, max error " + _format_error_value(cell.max_error)
    first_line = cell.message.strip().splitlines()[0] if cell.message.strip() else ""
    return first_line[:200]


def _cell_label(cell: CellResult) -> str:
    if cell.index is not None:
        position = "#%d" % cell.index
    elif cell.golden_index is not None:
        position = "golden #%d" % cell.golden_index
    else:
        position = ""
    name = cell.cell_id or ("cell " + position if position else "cell")
    return name + (" (%s)" % position if cell.cell_id and position else "")


def _cell_html(cell: CellResult, anchor: str) -> str:
    failed = not cell.verdict.passed
    parts: List[str] = []
    short = _cell_short(cell)
    # The summary line already shows a one-line message; repeat only longer ones in full.
    if cell.message and cell.message.strip() != short:
        parts.append('<p class="msg">%s</p>' % _esc(cell.message).replace("\n", "<br>"))
    facts = []
    if cell.matched_by:
        facts.append("matched by <b>%s</b>" % _esc(cell.matched_by))
    if cell.rules_fired:
        facts.append("normalization rules fired: <b>%s</b>" % _esc(_format_rules(cell.rules_fired)))
    if cell.max_error is not None:
        facts.append("max error: <b>%s</b>" % _esc(_format_error_value(cell.max_error)))
    if cell.duration is not None:
        facts.append("ran in %s" % _esc(_format_seconds(cell.duration)))
    if facts:
        parts.append('<p class="meta">%s</p>' % " \u00b7 ".join(facts))
    if cell.error:
        parts.append('<h3>error</h3><pre class="tb">%s</pre>' % _esc_limited(error_text(cell.error)))
    expected_outputs, actual_outputs = cell.expected, cell.actual
    if cell.error:
        # The traceback is shown above: diff the other outputs only, not the error twice.
        expected_outputs = [o for o in expected_outputs if o.get("output_type") != "error"]
        actual_outputs = [o for o in actual_outputs if o.get("output_type") != "error"]
    expected_lines, actual_lines = outputs_text(expected_outputs), outputs_text(actual_outputs)
    if failed and (expected_lines or actual_lines) and expected_lines != actual_lines:
        parts.append("<h3>outputs: expected vs actual</h3>" + side_by_side(expected_lines, actual_lines))
        if cell.diff:
            parts.append("<details><summary>unified diff</summary>%s</details>" % _unified_diff_html(cell.diff))
    elif cell.diff:
        parts.append("<h3>diff</h3>" + _unified_diff_html(cell.diff))
    if failed:
        parts.append(_image_comparison(cell))
    if not failed and actual_lines:
        parts.append("<h3>outputs</h3><pre>%s</pre>" % _esc_limited("\n".join(actual_lines)))
    if cell.source:
        parts.append("<details><summary>source</summary><pre>%s</pre></details>" % _esc_limited(cell.source))
    return (
        '<details class="cell %s v-cell-%s" id="%s"%s><summary>%s<span class="cellname">%s</span>'
        '<span class="short">%s</span></summary><div class="body">%s</div></details>'
        % (
            "failed" if failed else "passed",
            cell.verdict.value,
            _esc(anchor),
            " open" if failed else "",
            _badge(cell.verdict),
            _esc(_cell_label(cell)),
            _esc(short),
            "".join(parts) or '<p class="meta">no outputs</p>',
        )
    )


def _cell_anchor(notebook_number: int, cell: CellResult) -> str:
    return "nb-%d-%s" % (notebook_number, re.sub(r"[^A-Za-z0-9_-]", "_", cell_name(cell)))


def _counts_html(counts: Mapping[str, int]) -> str:
    ordered = sorted(counts.items(), key=lambda item: Verdict(item[0]).severity, reverse=True)
    return "".join(
        '<span class="count"><span class="badge v-%s">%s</span>%d</span>' % (name, name, number)
        for name, number in ordered
    )


def _notebook_html(number: int, notebook: NotebookResult) -> str:
    parts = [
        '<section class="notebook %s" id="nb-%d"><h2>%s %s</h2>'
        % ("passed" if notebook.verdict.passed else "failed", number, _badge(notebook.verdict), _esc(notebook.path))
    ]
    facts = []
    for label, value in (
        ("golden", notebook.golden),
        ("kernel", notebook.kernel),
        ("duration", _format_seconds(notebook.duration)),
        ("kernel start", _format_seconds(notebook.kernel_start_seconds)),
        ("executed notebook", notebook.executed_path),
    ):
        if value:
            facts.append("%s: <b>%s</b>" % (label, _esc(value)))
    if notebook.golden_written:
        facts.append("<b>golden notebook updated</b>")
    if facts:
        parts.append('<p class="meta">%s</p>' % " \u00b7 ".join(facts))
    if notebook.error:
        stderr = ""
        if notebook.kernel_stderr:
            stderr = "<h3>kernel stderr</h3><pre>%s</pre>" % _esc_limited(notebook.kernel_stderr)
        parts.append(
            '<div class="nb-error" role="alert"><strong>Notebook error: this notebook could not be validated.</strong>'
            "<pre>%s</pre>%s</div>" % (_esc_limited(notebook.error), stderr)
        )
    if notebook.warnings:
        parts.append(
            '<div class="warnings"><b>warnings</b><ul>%s</ul></div>'
            % "".join("<li>%s</li>" % _esc(w) for w in notebook.warnings)
        )
    if notebook.rules_fired:
        parts.append('<p class="meta">normalization rules fired: <b>%s</b></p>' % _esc(_format_rules(notebook.rules_fired)))
    if notebook.cells:
        parts.append('<p class="meta">cells: %s</p>' % _counts_html(notebook.counts()))
        for cell in notebook.cells:
            parts.append(_cell_html(cell, _cell_anchor(number, cell)))
    elif not notebook.error:
        parts.append('<p class="meta">no code cells</p>')
    parts.append("</section>")
    return "".join(parts)


def _summary_table(run: RunResult) -> str:
    rows = []
    for number, notebook in enumerate(run.notebooks, 1):
        rows.append(
            '<tr><td><a href="#nb-%d">%s</a></td><td>%s</td><td>%d</td><td>%s</td><td>%s</td></tr>'
            % (
                number,
                _esc(notebook.path),
                _badge(notebook.verdict) + (" notebook error" if notebook.error else ""),
                len(notebook.cells),
                _counts_html(notebook.counts()),
                _esc(_format_seconds(notebook.duration)),
            )
        )
    if not rows:
        rows.append('<tr><td colspan="5">no notebooks in this run</td></tr>')
    return (
        '<table class="summary"><thead><tr><th>notebook</th><th>verdict</th><th>cells</th>'
        "<th>cell verdicts</th><th>duration</th></tr></thead><tbody>%s</tbody></table>" % "".join(rows)
    )


def render_html(run: RunResult, title: str = "Notebook validation report") -> str:
    """The HTML report as a string (see :func:`write_html`)."""
    summary = run.summary()
    overall = worst(nb.verdict for nb in run.notebooks) if run.notebooks else None
    generated = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    headline = "%d notebook%s: %d passed, %d failed" % (
        summary["total"],
        "" if summary["total"] == 1 else "s",
        summary["passed"],
        summary["failed"],
    )
    duration = _format_seconds(run.duration)
    meta = "generated %s \u00b7 report schema %s%s" % (
        generated,
        REPORT_SCHEMA_VERSION,
        (" \u00b7 run took " + duration) if duration else "",
    )
    return "".join(
        [
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">",
            '<meta http-equiv="Content-Security-Policy" content="%s">' % html.escape(_CSP, quote=True),
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            "<title>%s</title>" % _esc(title),
            "<style>%s</style>" % _CSS,
            "<script>%s</script>" % _JS,
            "</head><body>",
            "<h1>%s %s</h1>" % (_esc(title), _badge(overall) if overall else ""),
            '<p class="meta"><b>%s</b></p><p class="meta">%s</p>' % (_esc(headline), _esc(meta)),
            '<div class="controls"><button type="button" id="expand-all">expand all cells</button>'
            '<button type="button" id="collapse-all">collapse all cells</button>'
            '<label><input type="checkbox" id="failing-only"> failing only</label></div>',
            _summary_table(run),
            "".join(_notebook_html(number, nb) for number, nb in enumerate(run.notebooks, 1)),
            "</body></html>\n",
        ]
    )


def write_html(run: RunResult, path: PathLike, title: str = "Notebook validation report") -> str:
    """Write the self-contained HTML report (no external resources); returns the absolute path."""
    return _write_text_atomic(path, render_html(run, title))


# ============================================================================ all at once


def write_reports(
    run: RunResult,
    json_path: Optional[PathLike] = None,
    junit_path: Optional[PathLike] = None,
    html_path: Optional[PathLike] = None,
) -> Dict[str, str]:
    """Write the reports that have a path; returns ``{"json"|"junit"|"html": absolute path}``."""
    written: Dict[str, str] = {}
    if json_path:
        written["json"] = write_json(run, json_path)
    if junit_path:
        written["junit"] = write_junit(run, junit_path)
    if html_path:
        written["html"] = write_html(run, html_path)
    return written
