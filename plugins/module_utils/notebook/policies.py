# -*- coding: utf-8 -*-
# Copyright: mlops.notebooks contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Per-cell policies read from tags and cell metadata.

Understands nbval's markers (as tags, or as ``# NBVAL_*`` comments on the first
line, as nbval does), nbclient's ``raises-exception`` / ``skip-execution`` tags,
and our own ``metadata.nbvalidate`` block::

    {"nbvalidate": {"skip": false, "ignore_output": false, "raises_exception": false,
                    "stderr": "compare|ignore_warnings|forbid", "rtol": 0.01, "atol": 0.0}}
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Optional

NBVAL_MARKERS = (
    "NBVAL_IGNORE_OUTPUT",
    "NBVAL_CHECK_OUTPUT",
    "NBVAL_RAISES_EXCEPTION",
    "NBVAL_SKIP",
)
STDERR_POLICIES = ("compare", "ignore_warnings", "forbid")


@dataclass(frozen=True)
class CellPolicy:
    skip: bool = False                 # not executed, not compared (SKIPPED)
    raises_exception: bool = False     # an error is expected; no error is a failure
    ignore_output: bool = False        # executed, outputs not compared
    check_output: bool = False         # compared even when the run default is to ignore outputs
    stderr: Optional[str] = None       # overrides CompareOptions.stderr
    rtol: Optional[float] = None       # overrides CompareOptions.rtol for this cell
    atol: Optional[float] = None


def _markers(cell: Mapping[str, Any]) -> set:
    metadata = cell.get("metadata") or {}
    found = set(str(tag) for tag in (metadata.get("tags") or []))
    source = cell.get("source") or ""
    if isinstance(source, list):
        source = "".join(source)
    first_line = source.lstrip().split("\n", 1)[0].strip()
    if first_line.startswith("#"):
        comment = first_line.lstrip("#").strip()
        for marker in NBVAL_MARKERS:
            if comment.startswith(marker):
                found.add(marker)
    return found


def cell_policy(cell: Mapping[str, Any]) -> CellPolicy:
    """The policy of one cell (a dict-like nbformat cell)."""
    markers = _markers(cell)
    metadata = cell.get("metadata") or {}
    own = metadata.get("nbvalidate") or {}
    if not isinstance(own, Mapping):
        own = {}

    stderr = own.get("stderr")
    if stderr not in STDERR_POLICIES:
        stderr = None

    def number(key: str) -> Optional[float]:
        value = own.get(key)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return None
        return float(value)

    return CellPolicy(
        skip=bool(own.get("skip")) or "NBVAL_SKIP" in markers or "skip-execution" in markers,
        raises_exception=bool(own.get("raises_exception"))
        or "NBVAL_RAISES_EXCEPTION" in markers
        or "raises-exception" in markers,
        ignore_output=bool(own.get("ignore_output")) or "NBVAL_IGNORE_OUTPUT" in markers,
        check_output=bool(own.get("check_output")) or "NBVAL_CHECK_OUTPUT" in markers,
        stderr=stderr,
        rtol=number("rtol"),
        atol=number("atol"),
    )
