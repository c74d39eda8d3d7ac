# -*- coding: utf-8 -*-
# Copyright: mlops.notebooks contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Reading and writing notebooks, with errors a person can act on.

``read_notebook`` returns an nbformat v4 ``NotebookNode`` (older formats are
upgraded) whose cells all carry ids. Cells that had no id get a deterministic
one derived from their position and source, so reading the same file twice (or
a golden file and its executed copy) yields the same ids; nbformat's own
normalisation would invent random ones.

Callers that need to know which ids were not in the file (alignment pairs cells
by position only when an id is not a real one) pass a set as ``generated_ids``:
the generated ids are added to it. Nothing about it is stored in the notebook,
and the ids themselves survive copies of the notebook (the executed copy), so the
set applies to those too.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from typing import Any, Mapping, Optional, Set

from .model import EngineError

# Cell ids must match this pattern (nbformat 4.5 schema): 1-64 of [a-zA-Z0-9-_].
_ID_LENGTH = 12
_MAX_MESSAGE = 300
CELL_TYPES = ("code", "markdown", "raw")


def _nbformat() -> Any:
    try:
        import nbformat  # pylint: disable=import-outside-toplevel
    except ImportError as exc:  # reported to the user, never a traceback
        raise EngineError("the Python package 'nbformat' is required to read notebooks: %s" % exc) from exc
    return nbformat


def cell_source(cell: Mapping[str, Any]) -> str:
    """A cell's source as one string (nbformat allows a list of lines on disk)."""
    source = cell.get("source")
    if source is None:
        return ""
    if isinstance(source, (list, tuple)):
        return "".join(str(line) for line in source)
    return str(source)


def _short(text: str) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= _MAX_MESSAGE else text[: _MAX_MESSAGE - 3] + "..."


def _derived_id(index: int, source: str, taken: set) -> str:
    """A stable id for a cell that has none: same position and source, same id."""
    seed = "%d\0%s" % (index, source)
    while True:
        candidate = hashlib.sha1(seed.encode("utf-8")).hexdigest()[:_ID_LENGTH]
        if candidate not in taken:
            return candidate
        seed += "\0"  # a collision (duplicate source and position cannot happen, but a user id can)


def ensure_cell_ids(nb: Any, replace_all: bool = False, generated_ids: Optional[Set[str]] = None) -> int:
    """Give every cell of a v4.5+ notebook a unique id; returns how many were set.

    ``replace_all`` re-derives every id (used after upgrading from a format
    without ids, where nbformat has just invented random ones). The ids set here
    are added to ``generated_ids`` when given.
    """
    cells = nb.get("cells") or []
    taken: set = set()
    if not replace_all:
        for cell in cells:
            cell_id = cell.get("id")
            if isinstance(cell_id, str) and cell_id:
                taken.add(cell_id)
    seen: set = set()
    changed = 0
    for index, cell in enumerate(cells):
        cell_id = cell.get("id")
        if not replace_all and "id" in cell and not (isinstance(cell_id, str) and cell_id in seen):
            # an existing id is kept even when malformed: validation reports it, we do not hide it
            if isinstance(cell_id, str):
                seen.add(cell_id)
            continue
        new_id = _derived_id(index, cell_source(cell), taken | seen)
        cell["id"] = new_id
        seen.add(new_id)
        if generated_ids is not None:
            generated_ids.add(new_id)
        changed += 1
    return changed


def _version_of(data: Any, path: str) -> tuple:
    if not isinstance(data, dict):
        raise EngineError("%s: not a Jupyter notebook (the JSON document is a %s, not an object)"
                          % (path, type(data).__name__))
    major = data.get("nbformat")
    if isinstance(major, bool) or not isinstance(major, int):
        raise EngineError("%s: not a Jupyter notebook (no integer 'nbformat' version field)" % path)
    minor = data.get("nbformat_minor", 0)
    if isinstance(minor, bool) or not isinstance(minor, int):
        raise EngineError("%s: not a valid notebook ('nbformat_minor' is not an integer)" % path)
    if major < 3 or major > 4:
        raise EngineError("%s: unsupported notebook format version %d (supported: 3 and 4)" % (path, major))
    return major, minor


def _validation_message(error: Any) -> str:
    """'cells[2].cell_type: message' from an nbformat/jsonschema ValidationError."""
    parts = []
    for item in list(getattr(error, "relative_path", None) or getattr(error, "path", None) or []):
        if isinstance(item, int):
            parts.append("[%d]" % item)
        else:
            parts.append(("." if parts else "") + str(item))
    where = "".join(parts)
    message = getattr(error, "message", None) or str(error).split("\n", 1)[0]
    return _short("%s: %s" % (where, message) if where else message)


def notebook_from_dict(data: Any, path: str = "<notebook>", generated_ids: Optional[Set[str]] = None) -> Any:
    """Upgrade, give ids to and validate a parsed notebook; returns a v4 NotebookNode.

    The ids given to cells that had none (or a duplicate) are added to ``generated_ids`` when given.
    """
    generated: Set[str] = set()
    nbformat = _nbformat()
    major, minor = _version_of(data, path)
    try:
        # as nbformat.reads does: join multi-line strings, drop transient fields
        nb = nbformat.versions[major].to_notebook_json(data, minor=minor)
    except Exception:  # malformed structure: validation below names the problem
        nb = nbformat.from_dict(data)
    if (major, minor) < (4, 5):
        try:
            if major < 4:
                nb = nbformat.convert(nb, 4)
            if nb.get("nbformat_minor", 0) < 5:  # convert() changes majors only; minors need upgrade()
                nb = nbformat.v4.upgrade(nb, from_version=4, from_minor=nb.get("nbformat_minor", 0))
        except Exception as exc:  # a malformed old notebook fails inside the converter
            raise EngineError("%s: cannot upgrade this nbformat %d.%d notebook to version 4: %s"
                              % (path, major, minor, _short(str(exc) or type(exc).__name__))) from exc
        ensure_cell_ids(nb, replace_all=True, generated_ids=generated)
    _check_cells(nb, path)
    if (major, minor) >= (4, 5):
        ensure_cell_ids(nb, generated_ids=generated)
    try:
        nbformat.validate(nb)
    except nbformat.ValidationError as exc:
        raise EngineError("%s: not a valid notebook: %s" % (path, _validation_message(exc))) from exc
    except Exception as exc:  # the validator itself choked on an odd structure
        raise EngineError("%s: not a valid notebook: %s" % (path, _short(str(exc) or type(exc).__name__))) from exc
    if generated_ids is not None:   # only for a notebook that is returned
        generated_ids.update(generated)
    return nb


def _check_cells(nb: Any, path: str) -> None:
    """The structural mistakes the schema validator reports poorly (or crashes on)."""
    cells = nb.get("cells")
    if not isinstance(cells, list):
        raise EngineError("%s: not a valid notebook: 'cells' must be a list, not %s"
                          % (path, "missing" if cells is None else type(cells).__name__))
    for index, cell in enumerate(cells):
        if not isinstance(cell, dict):
            raise EngineError("%s: not a valid notebook: cells[%d] is a %s, not a cell object"
                              % (path, index, type(cell).__name__))
        if cell.get("cell_type") not in CELL_TYPES:
            raise EngineError("%s: not a valid notebook: cells[%d].cell_type is %r (expected one of %s)"
                              % (path, index, cell.get("cell_type"), ", ".join(CELL_TYPES)))


def read_notebook(path: str, generated_ids: Optional[Set[str]] = None) -> Any:
    """Read a notebook file; raises EngineError saying what is wrong with it.

    The ids given to cells that had none in the file are added to ``generated_ids`` when given.
    """
    try:
        with open(path, "rb") as handle:
            raw = handle.read()
    except FileNotFoundError as exc:
        raise EngineError("notebook not found: %s" % path) from exc
    except IsADirectoryError as exc:
        raise EngineError("%s is a directory, not a notebook file" % path) from exc
    except OSError as exc:
        raise EngineError("cannot read notebook %s: %s" % (path, exc.strerror or exc)) from exc
    try:
        text = raw.decode("utf-8-sig")  # a byte order mark is valid UTF-8; tolerate it
    except UnicodeDecodeError as exc:
        raise EngineError("%s: not UTF-8 text (invalid byte 0x%02x at offset %d); notebooks are UTF-8 JSON"
                          % (path, raw[exc.start], exc.start)) from exc
    if not text.strip():
        raise EngineError("%s: empty file, not a notebook" % path)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise EngineError("%s: not valid JSON: %s at line %d column %d"
                          % (path, exc.msg, exc.lineno, exc.colno)) from exc
    return notebook_from_dict(data, path, generated_ids)


def write_notebook(nb: Any, path: str) -> None:
    """Write a notebook atomically: a temporary file in the same directory, then a rename.

    A reader never sees a half-written file, and a failed write leaves the old
    file intact. The file keeps the mode of the file it replaces.
    """
    nbformat = _nbformat()
    try:
        text = nbformat.writes(nb, version=4)
    except Exception as exc:
        raise EngineError("cannot serialise notebook for %s: %s" % (path, _short(str(exc)))) from exc
    if not text.endswith("\n"):
        text += "\n"
    directory = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(directory, exist_ok=True)
        try:
            mode = os.stat(path).st_mode & 0o7777
        except FileNotFoundError:
            umask = os.umask(0)
            os.umask(umask)
            mode = 0o666 & ~umask
        handle, temp_path = tempfile.mkstemp(prefix=".%s." % os.path.basename(path), suffix=".tmp", dir=directory)
    except OSError as exc:
        raise EngineError("cannot write notebook %s: %s" % (path, exc.strerror or exc)) from exc
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temp_path, mode)
        os.replace(temp_path, path)
    except OSError as exc:
        try:
            os.unlink(temp_path)
        except OSError:
            pass
        raise EngineError("cannot write notebook %s: %s" % (path, exc.strerror or exc)) from exc
