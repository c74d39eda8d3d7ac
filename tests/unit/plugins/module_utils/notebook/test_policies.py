# -*- coding: utf-8 -*-
# Copyright: mlops.notebooks contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Per-cell policies from tags, ``# NBVAL_*`` comments and the ``nbvalidate`` metadata block."""

from __future__ import annotations

from typing import Any, Dict, Optional, Sequence

import pytest

from ansible_collections.mlops.notebooks.plugins.module_utils.notebook.policies import CellPolicy, cell_policy


def cell(source: Any = "x = 1", tags: Sequence[str] = (), nbvalidate: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    metadata: Dict[str, Any] = {}
    if tags:
        metadata["tags"] = list(tags)
    if nbvalidate is not None:
        metadata["nbvalidate"] = nbvalidate
    return {"cell_type": "code", "source": source, "metadata": metadata, "outputs": []}


def test_plain_cell_has_the_default_policy():
    assert cell_policy(cell()) == CellPolicy()
    assert cell_policy({"cell_type": "code"}) == CellPolicy()      # no source, no metadata


@pytest.mark.parametrize("tag, field", [
    ("NBVAL_SKIP", "skip"),
    ("nbval-skip", "skip"),                      # nbval's own tag spelling
    ("skip-execution", "skip"),                  # nbclient
    ("NBVAL_RAISES_EXCEPTION", "raises_exception"),
    ("nbval-raises-exception", "raises_exception"),
    ("raises-exception", "raises_exception"),    # nbclient and nbval
    ("NBVAL_IGNORE_OUTPUT", "ignore_output"),
    ("nbval-ignore-output", "ignore_output"),
    ("NBVAL_CHECK_OUTPUT", "check_output"),
    ("nbval-check-output", "check_output"),
])
def test_tags(tag, field):
    policy = cell_policy(cell(tags=["unrelated", tag]))
    assert getattr(policy, field) is True
    others = {"skip", "raises_exception", "ignore_output", "check_output"} - {field}
    assert not any(getattr(policy, other) for other in others), policy


@pytest.mark.parametrize("source, field", [
    ("# NBVAL_SKIP\nraise SystemExit", "skip"),
    ("#NBVAL_RAISES_EXCEPTION\n1 / 0", "raises_exception"),
    ("## NBVAL_IGNORE_OUTPUT  (random numbers)\nimport random\nrandom.random()", "ignore_output"),
    ("   # NBVAL_CHECK_OUTPUT\nprint(1)", "check_output"),
    (["# NBVAL_CHECK_OUTPUT\n", "print(1)"], "check_output"),                 # list source as on disk
    ("import random\n# NBVAL_IGNORE_OUTPUT\nrandom.random()", "ignore_output"),  # nbval reads every comment line
    ("# PYTEST_VALIDATE_IGNORE_OUTPUT\nx", "ignore_output"),                  # nbval's legacy name
])
def test_comment_markers(source, field):
    assert getattr(cell_policy(cell(source)), field) is True


@pytest.mark.parametrize("source", [
    "print('# NBVAL_SKIP')",              # not a comment line
    "x = 1  # NBVAL_SKIP",                # nbval only reads whole comment lines
    "# NBVAL_SKIPPED\nx",                 # another word
    "# nbval-skip\nx",                    # comments use the exact marker name
    "# skip NBVAL_SKIP\nx",               # the marker must be the comment's first word
])
def test_text_that_is_not_a_marker(source):
    assert cell_policy(cell(source)) == CellPolicy()


def test_metadata_block():
    policy = cell_policy(cell(nbvalidate={"skip": True, "raises_exception": True, "ignore_output": True,
                                          "check_output": True, "stderr": "forbid", "rtol": 0.01, "atol": 1}))
    assert policy == CellPolicy(skip=True, raises_exception=True, ignore_output=True, check_output=True,
                                stderr="forbid", rtol=0.01, atol=1.0)


@pytest.mark.parametrize("block", [
    {"stderr": "shout", "rtol": "0.1", "atol": True},   # unknown policy, a string and a bool are not numbers
    "not a mapping",
    None,
])
def test_metadata_block_with_unusable_values_is_ignored(block):
    assert cell_policy(cell(nbvalidate=block)) == CellPolicy()


def test_tags_comments_and_metadata_combine():
    policy = cell_policy(cell("# NBVAL_IGNORE_OUTPUT\nx", tags=["raises-exception"],
                              nbvalidate={"stderr": "ignore_warnings"}))
    assert policy == CellPolicy(raises_exception=True, ignore_output=True, stderr="ignore_warnings")


def test_tags_that_are_not_a_list_are_ignored():
    assert cell_policy({"cell_type": "code", "source": "x", "metadata": {"tags": "NBVAL_SKIP"}}) == CellPolicy()
