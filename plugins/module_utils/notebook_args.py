# -*- coding: utf-8 -*-
# Copyright: mlops.notebooks contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Options of nb_validate: the argument spec, and its translation into engine options."""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass
from typing import Any, Dict, List, Optional

from ansible_collections.mlops.notebooks.plugins.module_utils.notebook.model import (
    CompareOptions,
    ExecutionOptions,
    Rule,
    ValidateOptions,
)

RULE_SPEC: Dict[str, Any] = dict(
    name=dict(type="str", required=True),
    action=dict(type="str", required=True, choices=["replace", "ignore", "drop_lines", "sort_lines"]),
    pattern=dict(type="str"),
    replacement=dict(type="str", default=""),
    tags=dict(type="list", elements="str", default=[]),
    cell_ids=dict(type="list", elements="str", default=[]),
    indices=dict(type="list", elements="int", default=[]),
    mime_types=dict(type="list", elements="str", default=[]),
    streams=dict(type="list", elements="str", default=[], choices=["stdout", "stderr"]),
)

COMPARE_SPEC: Dict[str, Any] = dict(
    strategy=dict(type="str", default="normalized", choices=["exact", "normalized", "tolerant"]),
    rtol=dict(type="float", default=1e-6),
    atol=dict(type="float", default=1e-9),
    scrubbers=dict(type="list", elements="str", default=["default"]),
    rules=dict(type="list", elements="dict", default=[], options=RULE_SPEC),
    image_threshold=dict(type="float", default=0.02),
    max_payload_bytes=dict(type="int", default=1000000),
    stderr=dict(type="str", default="compare", choices=["compare", "ignore_warnings", "forbid"]),
    ignore_mime_types=dict(type="list", elements="str", default=[]),
    lax=dict(type="bool", default=False),
)

REPORT_SPEC: Dict[str, Any] = dict(
    json=dict(type="path"),
    junit=dict(type="path"),
    html=dict(type="path"),
    executed_dir=dict(type="path"),
)

NB_VALIDATE_ARG_SPEC: Dict[str, Any] = dict(
    notebooks=dict(type="list", elements="str", required=True),
    golden=dict(type="path", default="stored"),
    parameters=dict(type="dict", default={}),
    kernel=dict(type="str"),
    cell_timeout=dict(type="float", default=60),
    timeout=dict(type="float", default=600),
    kernel_start_retries=dict(type="int", default=2),
    parallel=dict(type="int", default=0),
    mode=dict(type="str", default="compare", choices=["compare", "compare_only", "update_golden"]),
    backend=dict(type="str", default="local", choices=["local"]),
    compare=dict(type="dict", default={}, options=COMPARE_SPEC),
    report=dict(type="dict", default={}, options=REPORT_SPEC),
    fail_on_mismatch=dict(type="bool", default=True),
)


def _positive_or_none(value: Optional[float]) -> Optional[float]:
    return value if value is not None and value > 0 else None


def build_validate_options(params: Dict[str, Any]) -> ValidateOptions:
    """Engine options from the module's validated parameters."""
    compare = params.get("compare") or {}
    rules = [
        Rule(
            name=rule["name"],
            action=rule["action"],
            pattern=rule.get("pattern"),
            replacement=rule.get("replacement") or "",
            tags=list(rule.get("tags") or []),
            cell_ids=list(rule.get("cell_ids") or []),
            indices=list(rule.get("indices") or []),
            mime_types=list(rule.get("mime_types") or []),
            streams=list(rule.get("streams") or []),
        )
        for rule in compare.get("rules") or []
    ]
    if params.get("parallel", 0) < 0:
        raise ValueError("parallel must be 0 (one per core) or more")
    if params.get("kernel_start_retries", 0) < 0:
        raise ValueError("kernel_start_retries must not be negative")
    report = params.get("report") or {}
    return ValidateOptions(
        execution=ExecutionOptions(
            kernel_name=params.get("kernel"),
            cell_timeout=_positive_or_none(params.get("cell_timeout")),
            timeout=_positive_or_none(params.get("timeout")),
            kernel_start_retries=params.get("kernel_start_retries", 2),
            parameters=dict(params.get("parameters") or {}),
        ),
        compare=CompareOptions(
            strategy=compare.get("strategy", "normalized"),
            rtol=compare.get("rtol", 1e-6),
            atol=compare.get("atol", 1e-9),
            scrubbers=list(compare.get("scrubbers") or []),
            rules=rules,
            image_threshold=compare.get("image_threshold", 0.02),
            max_payload_bytes=compare.get("max_payload_bytes", 1000000),
            stderr=compare.get("stderr", "compare"),
            ignore_mime_types=list(compare.get("ignore_mime_types") or []),
            lax=bool(compare.get("lax", False)),
        ),
        mode=params.get("mode", "compare"),
        parallel=params.get("parallel", 0),
        executed_dir=report.get("executed_dir"),
    )


def _is_within(path: str, directory: Optional[str]) -> bool:
    if not directory:
        return False
    try:
        return os.path.commonpath([path, directory]) == directory
    except ValueError:
        return False


@dataclass
class NotebookEntry:
    """One notebook found from the user's ``notebooks`` list, or an entry that found nothing."""

    entry: str                       # what the user wrote
    path: Optional[str] = None       # absolute notebook path (None: the entry matched nothing)
    root: Optional[str] = None       # the directory golden paths are taken relative to
    error: Optional[str] = None


def expand_notebook_entries(patterns: List[str], golden: Optional[str]) -> List[NotebookEntry]:
    """Notebooks from paths, directories and globs, in the order given, duplicates dropped.

    Directories are searched recursively (checkpoints and a golden directory inside them are
    skipped) and their notebooks' golden paths are relative to that directory; a file or glob
    match is relative to its own directory. An entry that matches nothing is kept as an error.
    """
    golden_dir = None
    if golden and golden != "stored":
        candidate = os.path.abspath(os.path.expanduser(golden))
        if os.path.isdir(candidate):
            golden_dir = candidate

    entries: List[NotebookEntry] = []
    seen = set()
    for pattern in patterns:
        expanded = os.path.expanduser(pattern)
        if os.path.isdir(expanded):
            root: Optional[str] = os.path.abspath(expanded)
            matches = sorted(glob.glob(os.path.join(glob.escape(expanded), "**", "*.ipynb"), recursive=True))
        elif glob.has_magic(expanded):
            root = None
            matches = sorted(glob.glob(expanded, recursive=True))
        else:
            root = None
            matches = [expanded]
        matches = [
            os.path.abspath(m) for m in matches
            if ".ipynb_checkpoints" not in m.split(os.sep) and not _is_within(os.path.abspath(m), golden_dir)
        ]
        if not matches:
            entries.append(NotebookEntry(entry=pattern, error="no notebook matches %r" % pattern))
        for match in matches:
            if match in seen:
                continue
            seen.add(match)
            error = None if os.path.exists(match) else "notebook not found: %s" % match
            entries.append(NotebookEntry(entry=pattern, path=match, root=root or os.path.dirname(match), error=error))
    return entries
