"""The local backend's choices that need no registry: tool locations, storage settings, argument checks."""

from __future__ import annotations

import pytest

from ansible_collections.mlops.notebooks.plugins.module_utils.images import errors, local
from ansible_collections.mlops.notebooks.plugins.module_utils.images.reference import InvalidImageReference


def test_storage_defaults_to_the_project_cache_with_vfs_and_chroot():
    tools = local.LocalTools.from_environment({"XDG_CACHE_HOME": "/cache"})
    assert tools == local.LocalTools(storage_root="/cache/mlops-notebooks/buildah/storage",
                                     run_root="/cache/mlops-notebooks/buildah/run", storage_driver="vfs",
                                     isolation="chroot")
    assert tools.buildah("images") == ["buildah", "--root", "/cache/mlops-notebooks/buildah/storage", "--runroot",
                                       "/cache/mlops-notebooks/buildah/run", "--storage-driver", "vfs", "images"]


def test_environment_overrides_the_storage_choices():
    tools = local.LocalTools.from_environment({
        "MLOPS_NOTEBOOKS_CACHE": "/project-cache",
        "MLOPS_NOTEBOOKS_BUILDAH_RUNROOT": "/run/b",
        "STORAGE_DRIVER": "overlay",
        "BUILDAH_ISOLATION": "oci",
    })
    assert (tools.storage_root, tools.run_root, tools.storage_driver, tools.isolation) == (
        "/project-cache/buildah/storage", "/run/b", "overlay", "oci")
    assert local.LocalTools.from_environment({"MLOPS_NOTEBOOKS_BUILDAH_ROOT": "/s"}).storage_root == "/s"


def test_missing_tools_are_a_permanent_tool_missing(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(errors.ImageError) as raised:
        local.inspect("quay.io/org/image:1", tools=local.LocalTools(str(tmp_path / "s"), str(tmp_path / "r")))
    assert raised.value.reason == errors.TOOL_MISSING
    assert raised.value.temporary is False
    assert "skopeo" in raised.value.message and "install" in raised.value.message
    with pytest.raises(errors.ImageError) as raised:
        local.run_checks("quay.io/org/image:1", tools=local.LocalTools(str(tmp_path / "s"), str(tmp_path / "r")))
    assert raised.value.reason == errors.TOOL_MISSING
    assert "buildah" in raised.value.message


def test_arguments_are_checked_before_any_tool_runs(tmp_path):
    tools = local.LocalTools(str(tmp_path / "s"), str(tmp_path / "r"))
    with pytest.raises(errors.InvalidPullSecret, match="does not exist"):
        local.inspect("quay.io/org/image:1", authfile=str(tmp_path / "missing.json"), tools=tools)
    with pytest.raises(InvalidImageReference):
        local.inspect("quay.io/Org/image", tools=tools)
    with pytest.raises(InvalidImageReference, match="needs a tag, not a digest"):
        local.copy("quay.io/org/a:1", "quay.io/org/b@sha256:" + "0" * 64, tools=tools)
