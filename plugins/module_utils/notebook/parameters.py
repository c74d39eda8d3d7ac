# -*- coding: utf-8 -*-
# Copyright: mlops.notebooks contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Papermill-compatible parameters.

A notebook declares its defaults in the cell tagged ``parameters``. The values
given for a run go into a new code cell tagged ``injected-parameters``: it
replaces an earlier injected cell where that one stands, else it goes right
after the ``parameters`` cell, else at the top (papermill's placement).

Values usually arrive as strings (Ansible, command lines), so each one is
converted to the type of its default where that is unambiguous: default
``n = 10`` and the value ``"5"`` give ``n = 5``; a string default keeps the
value a string. Values are written as Python literals.
"""

from __future__ import annotations

import ast
import json
import keyword
import math
from typing import Any, Dict, Mapping, Optional, Tuple

from .model import EngineError
from .nbio import cell_source

PARAMETERS_TAG = "parameters"
INJECTED_TAG = "injected-parameters"
INJECTED_HEADER = "# Parameters\n"

_TRUE = ("true", "yes", "on", "1")
_FALSE = ("false", "no", "off", "0")
_NO_DEFAULT = object()


def _tags(cell: Mapping[str, Any]) -> list:
    return list((cell.get("metadata") or {}).get("tags") or [])


def _first_tagged(cells: list, tag: str) -> int:
    for index, cell in enumerate(cells):
        if tag in _tags(cell):
            return index
    return -1


def parameter_defaults(source: str) -> Dict[str, Any]:
    """Literal defaults assigned in a parameters cell (``name = literal`` or ``name: T = literal``).

    Assignments whose value is not a literal (``path = os.getcwd()``) have no
    known type and are left out; so is a cell that does not parse (IPython magics).
    """
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return {}
    defaults: Dict[str, Any] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign):
            targets, value = node.targets, node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            targets, value = [node.target], node.value
        else:
            continue
        try:
            literal = ast.literal_eval(value)
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
            literal = _NO_DEFAULT
        for target in targets:
            if isinstance(target, ast.Name):
                if literal is _NO_DEFAULT:
                    defaults.pop(target.id, None)
                else:
                    defaults[target.id] = literal
    return defaults


def _parse_bool(text: str) -> Optional[bool]:
    lowered = text.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    return None


def _parse_container(text: str, kind: type) -> Any:
    """A list/dict/tuple written as a Python literal or as JSON; None when it is not one."""
    for parse in (ast.literal_eval, json.loads):
        try:
            value = parse(text)
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
            continue
        if kind is tuple and isinstance(value, list):
            value = tuple(value)
        if isinstance(value, kind):
            return value
    return None


def coerce_to_default(value: Any, default: Any) -> Any:
    """``value`` converted to the type of ``default`` when that is unambiguous, else unchanged."""
    if default is _NO_DEFAULT or default is None or value is None:
        return value
    kind = type(default)
    if isinstance(value, kind) and not (kind is not bool and isinstance(value, bool)):
        return value
    if kind is bool:
        if isinstance(value, str):
            parsed = _parse_bool(value)
            return value if parsed is None else parsed
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        return value
    if kind is int:
        if isinstance(value, str):
            try:
                return int(value.strip().replace("_", ""), 10)
            except ValueError:
                return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        return value
    if kind is float:
        if isinstance(value, str):
            try:
                return float(value.strip())
            except ValueError:
                return value
        if isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        return value
    if kind is str:
        if isinstance(value, (bool, int, float)):
            return str(value)
        return value
    if kind in (list, dict, tuple) and isinstance(value, str):
        parsed = _parse_container(value, kind)
        return value if parsed is None else parsed
    if kind is tuple and isinstance(value, list):
        return tuple(value)
    return value


def python_literal(value: Any, name: str = "value") -> str:
    """``value`` as Python source that evaluates back to it (JSON-like types, tuples, sets)."""
    if value is None or isinstance(value, (bool, str)):
        return repr(value)
    if isinstance(value, int):
        return repr(int(value))
    if isinstance(value, float):
        if math.isnan(value):
            return "float('nan')"
        if math.isinf(value):
            return "float('inf')" if value > 0 else "float('-inf')"
        return repr(float(value))
    if isinstance(value, list):
        return "[%s]" % ", ".join(python_literal(item, name) for item in value)
    if isinstance(value, tuple):
        items = [python_literal(item, name) for item in value]
        return "(%s,)" % items[0] if len(items) == 1 else "(%s)" % ", ".join(items)
    if isinstance(value, (set, frozenset)):
        if not value:
            return "set()"
        return "{%s}" % ", ".join(sorted(python_literal(item, name) for item in value))
    if isinstance(value, Mapping):
        return "{%s}" % ", ".join(
            "%s: %s" % (python_literal(key, name), python_literal(item, name)) for key, item in value.items()
        )
    raise EngineError("parameter %r: a value of type %s cannot be written as a Python literal"
                      % (name, type(value).__name__))


def _check_language(nb: Mapping[str, Any]) -> None:
    metadata = nb.get("metadata") or {}
    language = (metadata.get("kernelspec") or {}).get("language") or (metadata.get("language_info") or {}).get("name")
    if language and str(language).lower() != "python":
        raise EngineError("parameters are written as Python assignments, but this notebook's language is %s"
                          % language)


def render_parameters(params: Mapping[str, Any], defaults: Mapping[str, Any]) -> Tuple[str, Dict[str, Any]]:
    """The injected cell's source and the typed values it assigns."""
    lines = [INJECTED_HEADER]
    typed: Dict[str, Any] = {}
    for name, value in params.items():
        if not isinstance(name, str) or not name.isidentifier() or keyword.iskeyword(name):
            raise EngineError("parameter name %r is not a valid Python identifier" % (name,))
        typed[name] = coerce_to_default(value, defaults.get(name, _NO_DEFAULT))
        lines.append("%s = %s\n" % (name, python_literal(typed[name], name)))
    return "".join(lines), typed


def _unique_id(nb: Mapping[str, Any], wanted: str) -> str:
    taken = {cell.get("id") for cell in nb.get("cells") or []}
    candidate, number = wanted, 1
    while candidate in taken:
        number += 1
        candidate = "%s-%d" % (wanted, number)
    return candidate


def inject_parameters(nb: Any, params: Optional[Mapping[str, Any]]) -> bool:
    """Inject ``params`` into ``nb`` in place; returns True when a cell was injected.

    Nothing happens when ``params`` is empty (as papermill does). Raises
    EngineError for an invalid name, a value that is no Python literal, or a
    notebook whose kernel language is not Python.
    """
    if not params:
        return False
    _check_language(nb)
    cells = nb["cells"]
    parameters_index = _first_tagged(cells, PARAMETERS_TAG)
    defaults = parameter_defaults(cell_source(cells[parameters_index])) if parameters_index >= 0 else {}
    source, _typed = render_parameters(params, defaults)

    injected_index = _first_tagged(cells, INJECTED_TAG)
    if injected_index >= 0:
        position = injected_index
    elif parameters_index >= 0:
        position = parameters_index + 1
    else:
        position = 0
    # Every earlier injected cell goes; the new one takes the first one's place.
    kept = []
    for index, cell in enumerate(cells):
        if INJECTED_TAG in _tags(cell):
            if index < position:
                position -= 1
            continue
        kept.append(cell)

    cell: Dict[str, Any] = {
        "cell_type": "code",
        "execution_count": None,
        "metadata": {"tags": [INJECTED_TAG]},
        "outputs": [],
        "source": source,
    }
    if (nb.get("nbformat"), nb.get("nbformat_minor", 0)) >= (4, 5):
        nb["cells"] = kept  # the new id must not collide with the remaining cells
        cell["id"] = _unique_id(nb, INJECTED_TAG)
    try:
        from nbformat import from_dict  # pylint: disable=import-outside-toplevel

        new_cell: Any = from_dict(cell)
    except ImportError:  # a plain dict notebook works without nbformat
        new_cell = cell
    kept.insert(position, new_cell)
    nb["cells"] = kept
    return True
