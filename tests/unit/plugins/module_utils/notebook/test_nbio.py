# -*- coding: utf-8 -*-
# Copyright: mlops.notebooks contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Reading and writing notebooks: every broken input gets a clear EngineError."""

from __future__ import annotations

import json
import os
import shutil
import stat

import pytest

nbformat = pytest.importorskip("nbformat", reason="nbformat is needed to read notebooks")

from ansible_collections.mlops.notebooks.plugins.module_utils.notebook import nbio  # noqa: E402
from ansible_collections.mlops.notebooks.plugins.module_utils.notebook.model import EngineError  # noqa: E402

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "exec")


def _v45(cells, **extra):
    return {"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5, **extra}


def _code(source, **extra):
    return {"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [], "source": source, **extra}


def _write(tmp_path, name, content):
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content if isinstance(content, str) else json.dumps(content), encoding="utf-8")
    return str(path)


# ----------------------------------------------------------------------------- errors


def test_missing_file(tmp_path):
    with pytest.raises(EngineError, match=r"notebook not found: .*nope\.ipynb"):
        nbio.read_notebook(str(tmp_path / "nope.ipynb"))


def test_directory_is_not_a_notebook(tmp_path):
    with pytest.raises(EngineError, match="is a directory"):
        nbio.read_notebook(str(tmp_path))


def test_not_utf8(tmp_path):
    path = _write(tmp_path, "latin1.ipynb", '{"cells": "caf\xe9"}'.encode("latin-1"))
    with pytest.raises(EngineError, match=r"not UTF-8 text \(invalid byte 0xe9 at offset 14\)"):
        nbio.read_notebook(path)


def test_not_json(tmp_path):
    path = _write(tmp_path, "broken.ipynb", '{\n "cells": [\n')
    with pytest.raises(EngineError, match=r"broken\.ipynb: not valid JSON: .* at line 3 column 1"):
        nbio.read_notebook(path)


def test_empty_file(tmp_path):
    with pytest.raises(EngineError, match="empty file"):
        nbio.read_notebook(_write(tmp_path, "empty.ipynb", "  \n"))


@pytest.mark.parametrize(
    "document, message",
    [
        ([1, 2], r"not a Jupyter notebook \(the JSON document is a list"),
        ({"cells": []}, r"no integer 'nbformat' version field"),
        ({"nbformat": 2, "cells": []}, r"unsupported notebook format version 2"),
        ({"nbformat": 4, "nbformat_minor": "5", "cells": []}, r"'nbformat_minor' is not an integer"),
    ],
)
def test_json_that_is_not_a_notebook(tmp_path, document, message):
    with pytest.raises(EngineError, match=message):
        nbio.read_notebook(_write(tmp_path, "x.ipynb", document))


def test_schema_violation_names_the_place(tmp_path):
    document = _v45([_code("x = 1", id="a"), {"cell_type": "code", "id": "b", "metadata": {}, "source": "y"}])
    with pytest.raises(EngineError) as info:
        nbio.read_notebook(_write(tmp_path, "invalid.ipynb", document))
    message = str(info.value)
    assert "not a valid notebook" in message
    assert "cells[1]" in message and "outputs" in message  # the code cell without 'outputs'
    assert "\n" not in message  # one line, no schema dump


@pytest.mark.parametrize(
    "cells, message",
    [
        ("x", r"'cells' must be a list, not str"),
        ([_code("a", id="a"), "b"], r"cells\[1\] is a str, not a cell object"),
        ([{"cell_type": "cod", "id": "a", "metadata": {}, "source": ""}],
         r"cells\[0\]\.cell_type is 'cod' \(expected one of code, markdown, raw\)"),
    ],
)
def test_structural_mistakes(tmp_path, cells, message):
    with pytest.raises(EngineError, match=message):
        nbio.read_notebook(_write(tmp_path, "cells.ipynb", _v45(cells)))


def test_malformed_cell_id_is_reported_not_repaired(tmp_path):
    document = _v45([_code("x = 1", id="has space")])
    with pytest.raises(EngineError, match=r"cells\[0\]\.id"):
        nbio.read_notebook(_write(tmp_path, "badid.ipynb", document))


def test_broken_v3_notebook_is_a_clear_error(tmp_path):
    with pytest.raises(EngineError, match=r"nbformat 3\.0 notebook"):
        nbio.read_notebook(_write(tmp_path, "v3.ipynb", {"nbformat": 3, "nbformat_minor": 0, "worksheets": 7}))


# ----------------------------------------------------------------------------- reading


def test_v3_is_upgraded_to_v4_with_ids():
    nb = nbio.read_notebook(os.path.join(FIXTURES, "v3_notebook.ipynb"))
    assert (nb.nbformat, nb.nbformat_minor) == (4, 5)
    assert [cell.cell_type for cell in nb.cells] == ["markdown", "code"]
    assert nb.cells[1].source == "x = 1\nprint(x)"
    assert nb.cells[1].outputs[0]["text"] == "1\n"
    assert all(cell.id for cell in nb.cells)
    nbformat.validate(nb)


def test_ids_given_to_cells_without_ids_are_stable(tmp_path):
    path = os.path.join(FIXTURES, "v4_4_no_ids.ipynb")
    first = nbio.read_notebook(path)
    copy = shutil.copy(path, str(tmp_path / "copy.ipynb"))
    second = nbio.read_notebook(copy)
    ids = [cell.id for cell in first.cells]
    assert ids == [cell.id for cell in second.cells]
    assert len(set(ids)) == 3
    assert first.nbformat_minor == 5
    assert first.cells[1].source == "a = 2\nb = a * 21"  # list source joined


def test_existing_ids_kept_missing_and_duplicate_ids_filled(tmp_path):
    document = _v45([_code("a", id="keep-me"), _code("b"), _code("c", id="keep-me")])
    nb = nbio.read_notebook(_write(tmp_path, "ids.ipynb", document))
    ids = [cell.id for cell in nb.cells]
    assert ids[0] == "keep-me"
    assert len(set(ids)) == 3
    again = nbio.read_notebook(_write(tmp_path, "ids2.ipynb", document))
    assert [cell.id for cell in again.cells] == ids


def test_generated_ids_are_reported_and_never_written(tmp_path):
    document = _v45([_code("a", id="keep-me"), _code("b"), _code("c", id="keep-me")])
    generated = set()
    nb = nbio.read_notebook(_write(tmp_path, "ids.ipynb", document), generated_ids=generated)
    assert generated == {nb.cells[1].id, nb.cells[2].id} and "keep-me" not in generated
    nbio.write_notebook(nb, str(tmp_path / "out.ipynb"))
    written = json.loads((tmp_path / "out.ipynb").read_text(encoding="utf-8"))
    assert [set(cell) for cell in written["cells"]] == [set(_code("x", id="i"))] * 3     # no extra keys
    assert set(written["metadata"]) <= {"kernelspec", "language_info"}
    # once written, the ids are the file's own
    again = set()
    nbio.read_notebook(str(tmp_path / "out.ipynb"), generated_ids=again)
    assert again == set()


def test_every_id_of_an_old_notebook_is_generated(tmp_path):
    generated = set()
    nb = nbio.read_notebook(os.path.join(FIXTURES, "v4_4_no_ids.ipynb"), generated_ids=generated)
    assert generated == {cell.id for cell in nb.cells} and len(generated) == 3
    from_dict = set()
    with open(os.path.join(FIXTURES, "v3_notebook.ipynb"), encoding="utf-8") as handle:
        upgraded = nbio.notebook_from_dict(json.load(handle), "v3", generated_ids=from_dict)
    assert from_dict == {cell.id for cell in upgraded.cells}


def test_generated_ids_not_reported_for_a_rejected_notebook(tmp_path):
    generated = set()
    document = _v45([_code("a"), {"cell_type": "code", "source": 7, "metadata": {}, "outputs": []}])
    with pytest.raises(EngineError):
        nbio.read_notebook(_write(tmp_path, "bad.ipynb", document), generated_ids=generated)
    assert generated == set()


def test_byte_order_mark_is_accepted(tmp_path):
    document = json.dumps(_v45([_code("x", id="one")])).encode("utf-8")
    nb = nbio.read_notebook(_write(tmp_path, "bom.ipynb", b"\xef\xbb\xbf" + document))
    assert nb.cells[0].id == "one"


def test_cell_source():
    assert nbio.cell_source({"source": ["a\n", "b"]}) == "a\nb"
    assert nbio.cell_source({"source": "text"}) == "text"
    assert nbio.cell_source({}) == ""


# ----------------------------------------------------------------------------- writing


def test_write_then_read_round_trip(tmp_path):
    nb = nbio.read_notebook(os.path.join(FIXTURES, "v4_4_no_ids.ipynb"))
    target = str(tmp_path / "sub" / "out.ipynb")
    nbio.write_notebook(nb, target)
    again = nbio.read_notebook(target)
    assert again.cells == nb.cells
    assert again.metadata.kernelspec == nb.metadata.kernelspec
    assert open(target, encoding="utf-8").read().endswith("}\n")
    assert os.listdir(tmp_path / "sub") == ["out.ipynb"]  # no temp file left


def test_write_keeps_mode_of_replaced_file(tmp_path):
    nb = nbio.read_notebook(os.path.join(FIXTURES, "v4_4_no_ids.ipynb"))
    target = tmp_path / "out.ipynb"
    target.write_text("old")
    os.chmod(target, 0o640)
    nbio.write_notebook(nb, str(target))
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o640


def test_failed_write_leaves_old_file_and_no_temp(tmp_path):
    target = tmp_path / "out.ipynb"
    target.write_text("old content")
    with pytest.raises(EngineError, match="cannot serialise notebook"):
        nbio.write_notebook({"cells": object()}, str(target))
    assert target.read_text() == "old content"
    assert os.listdir(tmp_path) == ["out.ipynb"]


def test_unwritable_directory_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    nb = nbformat.v4.new_notebook()
    with pytest.raises(EngineError, match=r"cannot write notebook .*file/out\.ipynb"):
        nbio.write_notebook(nb, str(blocker / "out.ipynb"))
