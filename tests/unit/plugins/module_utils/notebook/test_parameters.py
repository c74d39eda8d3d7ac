# -*- coding: utf-8 -*-
# Copyright: mlops.notebooks contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Papermill-compatible parameter injection (pure logic; execution tests run the injected cells)."""

from __future__ import annotations

import math

import pytest

nbformat = pytest.importorskip("nbformat", reason="nbformat is needed to build notebooks")

from ansible_collections.mlops.notebooks.plugins.module_utils.notebook import parameters  # noqa: E402
from ansible_collections.mlops.notebooks.plugins.module_utils.notebook.model import EngineError  # noqa: E402

DEFAULTS = '''\
n = 10
rate = 0.5
verbose = False
name = "world"
items = [1, 2]
options = {"a": 1}
shape: tuple = (2, 3)
nothing = None
computed = len(items)
'''


def _notebook(*cells):
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "language": "python", "display_name": "Python 3"}
    nb.cells = list(cells)
    return nb


def _tagged(source, *tags):
    cell = nbformat.v4.new_code_cell(source)
    cell.metadata["tags"] = list(tags)
    return cell


def _assigned(source):
    """name -> value of the injected cell, evaluated as Python (what the kernel will see)."""
    namespace = {}
    exec(compile(source, "<injected>", "exec"), {}, namespace)  # noqa: S102  trusted test input
    return namespace


def test_values_typed_like_defaults():
    nb = _notebook(_tagged(DEFAULTS, "parameters"), nbformat.v4.new_code_cell("print(n)"))
    injected = parameters.inject_parameters(nb, {
        "n": "5", "rate": "2", "verbose": "yes", "name": "5", "items": "[3, 4]",
        "options": '{"b": [true, null]}', "shape": "[4, 5]", "nothing": "7", "computed": "8", "extra": "x",
    })
    assert injected is True
    cell = nb.cells[1]
    assert cell.metadata.tags == ["injected-parameters"]
    assert cell.source.startswith("# Parameters\n")
    values = _assigned(cell.source)
    assert values == {
        "n": 5, "rate": 2.0, "verbose": True, "name": "5", "items": [3, 4], "options": {"b": [True, None]},
        "shape": (4, 5), "nothing": "7", "computed": "8", "extra": "x",
    }
    assert isinstance(values["rate"], float)
    assert isinstance(values["n"], int) and not isinstance(values["n"], bool)
    nbformat.validate(nb)


@pytest.mark.parametrize(
    "default, value, expected",
    [
        (10, "0x10", "0x10"),        # not a decimal int: left as given
        (10, 7.0, 7),
        (10, 7.5, 7.5),
        (1.5, 3, 3.0),
        (1.5, "nan", "nan-float"),
        (True, "off", False),
        (True, 0, False),
        (True, "maybe", "maybe"),
        ("s", 3, "3"),
        ("s", True, "True"),
        ([1], "not a list", "not a list"),
        ([1], "(1, 2)", "(1, 2)"),   # a tuple is not a list
        (None, "x", "x"),
    ],
)
def test_coercion(default, value, expected):
    result = parameters.coerce_to_default(value, default)
    if expected == "nan-float":
        assert isinstance(result, float) and math.isnan(result)
    else:
        assert result == expected and type(result) is type(expected)


def test_literals_round_trip():
    value = {"x": [1, 2.5, float("inf"), None, True], "t": (1,), "s": {3, 1}, "e": set(), 4: "q'\"\n"}
    text = parameters.python_literal(value)
    evaluated = eval(text, {"float": float, "set": set})  # noqa: S307  our own literal
    assert evaluated == value
    assert parameters.python_literal(float("nan")) == "float('nan')"


def test_unrepresentable_value_is_an_engine_error():
    nb = _notebook(_tagged("x = 1", "parameters"))
    with pytest.raises(EngineError, match=r"parameter 'x': a value of type object"):
        parameters.inject_parameters(nb, {"x": object()})


@pytest.mark.parametrize("name", ["a-b", "class", "1x", ""])
def test_invalid_names(name):
    nb = _notebook(_tagged("x = 1", "parameters"))
    with pytest.raises(EngineError, match="not a valid Python identifier"):
        parameters.inject_parameters(nb, {name: 1})


def test_injected_after_parameters_cell():
    nb = _notebook(nbformat.v4.new_markdown_cell("# t"), _tagged("x = 1", "parameters"),
                   nbformat.v4.new_code_cell("print(x)"))
    parameters.inject_parameters(nb, {"x": 2})
    assert [c.metadata.get("tags", []) for c in nb.cells] == [[], ["parameters"], ["injected-parameters"], []]
    assert nb.cells[2].id == "injected-parameters"


def test_injected_at_top_without_parameters_cell():
    nb = _notebook(nbformat.v4.new_code_cell("print(x)"))
    parameters.inject_parameters(nb, {"x": "a"})
    assert nb.cells[0].metadata.tags == ["injected-parameters"]
    assert _assigned(nb.cells[0].source) == {"x": "a"}


def test_earlier_injected_cell_replaced_in_place():
    nb = _notebook(_tagged("x = 1", "parameters"), nbformat.v4.new_code_cell("a = 1"),
                   _tagged("# Parameters\nx = 99\n", "injected-parameters"), nbformat.v4.new_code_cell("print(x)"),
                   _tagged("x = 98\n", "injected-parameters"))
    parameters.inject_parameters(nb, {"x": "3"})
    injected = [i for i, c in enumerate(nb.cells) if "injected-parameters" in c.metadata.get("tags", [])]
    assert injected == [2]                   # where the first one stood; the stray second one is gone
    assert len(nb.cells) == 4
    assert _assigned(nb.cells[2].source) == {"x": 3}
    nbformat.validate(nb)


def test_nothing_injected_without_parameters():
    nb = _notebook(_tagged("x = 1", "parameters"))
    assert parameters.inject_parameters(nb, {}) is False
    assert parameters.inject_parameters(nb, None) is False
    assert len(nb.cells) == 1


def test_parameters_cell_with_magics_still_injects_untyped():
    nb = _notebook(_tagged("%matplotlib inline\nx = 1", "parameters"))
    parameters.inject_parameters(nb, {"x": "2"})
    assert _assigned(nb.cells[1].source) == {"x": "2"}


def test_non_python_notebook_refused():
    nb = _notebook(_tagged("x <- 1", "parameters"))
    nb.metadata["kernelspec"] = {"name": "ir", "language": "R", "display_name": "R"}
    with pytest.raises(EngineError, match="this notebook's language is R"):
        parameters.inject_parameters(nb, {"x": 1})


def test_older_minor_version_gets_no_id():
    nb = _notebook(_tagged("x = 1", "parameters"))
    nb.nbformat_minor = 4
    for cell in nb.cells:
        del cell["id"]
    parameters.inject_parameters(nb, {"x": 2})
    assert "id" not in nb.cells[1]
    nbformat.validate(nb)


def test_defaults_parsed():
    assert parameters.parameter_defaults(DEFAULTS) == {
        "n": 10, "rate": 0.5, "verbose": False, "name": "world", "items": [1, 2], "options": {"a": 1},
        "shape": (2, 3), "nothing": None,
    }
