"""The local image backend (skopeo and buildah) against real local registries and the cached test images.

The tests start their own registries (anonymous and basic-auth) in a temporary state directory, push the test
images of tests/cluster/images.py (built once into the project cache: the first build takes minutes) and use a
throw-away buildah storage. Validation runs as UID 1000920000 with group 0, as OpenShift runs pods.
"""

from __future__ import annotations

import base64
import json
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest

from ansible_collections.mlops.notebooks.plugins.module_utils.images import errors, local
from ansible_collections.mlops.notebooks.plugins.module_utils.images.checks import CheckSettings, report_messages

CLUSTER_DIR = Path(__file__).resolve().parents[1] / "cluster"
if str(CLUSTER_DIR) not in sys.path:
    sys.path.insert(0, str(CLUSTER_DIR))

import images  # noqa: E402  (tests/cluster, put on sys.path above)
import registry  # noqa: E402

_MISSING = [tool for tool in ("buildah", "skopeo", "debootstrap", "docker-registry") if shutil.which(tool) is None]
pytestmark = pytest.mark.skipif(
    bool(_MISSING), reason=f"{', '.join(_MISSING)} not installed: run `scripts/bootstrap.sh images`"
)


@pytest.fixture(scope="module")
def state_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    directory = tmp_path_factory.mktemp("images-local")
    yield directory
    registry.stop(str(directory))


@pytest.fixture(scope="module")
def public_registry(state_dir: Path) -> str:
    return registry.start(str(state_dir))


@pytest.fixture(scope="module")
def private_registry(state_dir: Path) -> tuple[str, str, str]:
    return registry.start_private(str(state_dir))


@pytest.fixture(scope="module")
def test_images(public_registry: str, private_registry: tuple[str, str, str]) -> dict:
    return images.ensure_test_images(public_registry, images.default_cache_dir(), private=private_registry)


@pytest.fixture(scope="module")
def tools(state_dir: Path) -> Iterator[local.LocalTools]:
    storage = local.LocalTools(storage_root=str(state_dir / "buildah" / "storage"),
                               run_root=str(state_dir / "buildah" / "run"), retries=0)
    yield storage
    # vfs storage holds full copies of the images: leave nothing behind in the temporary directory.
    subprocess.run(storage.buildah("rm", "--all"), capture_output=True, timeout=120, check=False)
    shutil.rmtree(state_dir / "buildah", ignore_errors=True)


def _authfile(directory: Path, host: str, username: str, password: str) -> str:
    """An authfile made the way the module makes it: from a kubernetes.io/dockerconfigjson secret's data."""
    config = {"auths": {host: {"auth": base64.b64encode(f"{username}:{password}".encode()).decode()}}}
    secret_data = {".dockerconfigjson": base64.b64encode(json.dumps(config).encode()).decode()}
    return local.dockerconfigjson_to_authfile(secret_data, directory=str(directory))


def _working_containers(tools: local.LocalTools) -> list[str]:
    listing = subprocess.run(tools.buildah("containers", "--format", "{{.ContainerName}}"), capture_output=True,
                             text=True, timeout=60, check=True)
    return [name for name in listing.stdout.split() if name.startswith(local.CONTAINER_PREFIX)]


def _stored_images(tools: local.LocalTools) -> list[str]:
    listing = subprocess.run(tools.buildah("images", "--format", "{{.Name}}"), capture_output=True, text=True,
                             timeout=60, check=True)
    return listing.stdout.split()


def _closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_inspect_resolves_the_digest(test_images, tools):
    notebook = test_images["notebook"]
    details = local.inspect(notebook["reference"], tls_verify=False, tools=tools)
    assert details["digest"] == notebook["digest"]
    assert details["image"] == notebook["reference"].rsplit(":", 1)[0] + "@" + notebook["digest"]
    assert details["labels"]["io.mlops-notebooks.testimage"] == "notebook"
    assert details["os"] == "linux"
    assert "HOME=/opt/app-root/src" in details["env"]


def test_a_notebook_image_passes_under_an_arbitrary_uid(test_images, tools):
    notebook = test_images["notebook"]
    pinned = local.inspect(notebook["reference"], tls_verify=False, tools=tools)["image"]
    # Kept in the storage: the private registry's copy of the same image reuses its layers below.
    report = local.run_checks(pinned, tls_verify=False, tools=tools, keep_image=True)
    assert report.error is None, report.to_dict()
    assert report.passed is True, report.to_dict()
    assert report.user == {"uid": local.ARBITRARY_UID, "gid": 0, "home": "/opt/app-root/src"}
    assert {check["name"] for check in report.checks} == {"python", "import:jupyterlab", "home", "packages"}
    assert [entry["name"] for entry in report.software][:2] == ["Python", "JupyterLab"]
    assert report.python_version.startswith("3.")
    assert "jupyterlab" in {package["name"].lower() for package in report.packages}
    assert report.packages_complete is True
    assert report_messages(report) == []
    assert _working_containers(tools) == []


def test_an_image_without_jupyterlab_fails_that_check(test_images, tools):
    report = local.run_checks(test_images["python-only"]["reference"], tls_verify=False, tools=tools)
    assert report.passed is False
    assert [check["name"] for check in report.failed_checks] == ["import:jupyterlab"]
    assert "No module named 'jupyterlab'" in report.failed_checks[0]["message"]
    failure = errors.validation_failed(test_images["python-only"]["reference"], report)
    assert failure.reason == errors.VALIDATION_FAILED and failure.temporary is False
    assert "jupyterlab" in failure.message
    assert _working_containers(tools) == []


def test_an_image_without_python_fails_and_is_removed_afterwards(test_images, tools):
    reference = test_images["no-python"]["reference"]
    report = local.run_checks(reference, tls_verify=False, tools=tools)
    assert report.passed is False
    assert [check["name"] for check in report.failed_checks] == ["python"]
    assert report_messages(report) == [
        {"severity": "error", "message": "no python3 or python on PATH: a notebook image needs Python"}]
    assert _working_containers(tools) == []
    assert reference.rsplit(":", 1)[0] not in _stored_images(tools)


def test_settings_reach_the_check(test_images, tools):
    settings = CheckSettings(min_python_version="3.99", required_modules=["json", "venv"], list_packages=False)
    report = local.run_checks(test_images["python-only"]["reference"], settings, tls_verify=False, tools=tools,
                              home="/nonexistent")
    assert report.passed is False
    assert {check["name"] for check in report.failed_checks} == {"python", "home"}
    assert {check["name"] for check in report.checks} == {"python", "import:json", "import:venv", "home"}
    assert "HOME=/nonexistent is not a directory" in {check["name"]: check["message"]
                                                      for check in report.failed_checks}["home"]


def test_a_missing_image_is_a_permanent_image_not_found(public_registry, test_images, tools):
    missing = f"{public_registry}/testimages/does-not-exist:latest"
    for operation in (local.inspect, local.run_checks):
        with pytest.raises(errors.ImageError) as raised:
            operation(missing, tls_verify=False, tools=tools)
        assert raised.value.reason == errors.IMAGE_NOT_FOUND, raised.value.message
        assert raised.value.temporary is False
        assert missing in raised.value.message
    assert _working_containers(tools) == []


def test_a_private_image_needs_its_credentials(test_images, private_registry, tools, tmp_path):
    host, username, password = private_registry
    private = test_images["private-notebook"]
    for operation in (local.inspect, local.run_checks):
        with pytest.raises(errors.ImageError) as raised:
            operation(private["reference"], tls_verify=False, tools=tools)
        assert raised.value.reason == errors.AUTHENTICATION_FAILED, raised.value.message
        assert raised.value.temporary is False
    wrong = _authfile(tmp_path, host, username, "not-the-password")
    with pytest.raises(errors.ImageError) as raised:
        local.inspect(private["reference"], authfile=wrong, tls_verify=False, tools=tools)
    assert raised.value.reason == errors.AUTHENTICATION_FAILED

    authfile = _authfile(tmp_path, host, username, password)
    assert local.inspect(private["reference"], authfile=authfile, tls_verify=False, tools=tools)["digest"] == \
        private["digest"]
    report = local.run_checks(private["reference"], authfile=authfile, tls_verify=False, tools=tools)
    assert report.passed is True, report.to_dict()


def test_an_unreachable_registry_is_temporary(tools):
    unreachable = f"127.0.0.1:{_closed_port()}/testimages/notebook:latest"
    for operation in (local.inspect, local.run_checks):
        with pytest.raises(errors.ImageError) as raised:
            operation(unreachable, tls_verify=False, tools=tools)
        assert raised.value.reason == errors.REGISTRY_UNREACHABLE, raised.value.message
        assert raised.value.temporary is True


def test_a_plain_http_registry_with_tls_verification_is_a_permanent_setting_problem(test_images, tools):
    with pytest.raises(errors.ImageError) as raised:
        local.inspect(test_images["notebook"]["reference"], tls_verify=True, tools=tools)
    assert raised.value.reason == errors.REGISTRY_UNREACHABLE
    assert raised.value.temporary is False
    assert "tls_verify" in raised.value.message


def test_a_deadline_stops_the_tool(test_images, tools):
    with pytest.raises(errors.ImageError) as raised:
        local.inspect(test_images["notebook"]["reference"], tls_verify=False, tools=tools, timeout=0.001)
    assert raised.value.reason == errors.TIMEOUT
    assert raised.value.temporary is True


def test_copy_to_another_repository(public_registry, private_registry, test_images, tools, tmp_path):
    notebook = test_images["no-python"]
    destination = f"{public_registry}/copies/no-python:v1"
    copied = local.copy(notebook["reference"], destination, tls_verify=False, tools=tools)
    assert copied["digest"] == notebook["digest"]
    assert copied["image"] == f"{public_registry}/copies/no-python@{notebook['digest']}"
    assert local.inspect(destination, tls_verify=False, tools=tools)["digest"] == notebook["digest"]

    host, username, password = private_registry
    private_destination = f"{host}/copies/no-python:v1"
    with pytest.raises(errors.ImageError) as raised:
        local.copy(notebook["reference"], private_destination, tls_verify=False, tools=tools)
    assert raised.value.reason == errors.AUTHENTICATION_FAILED
    assert private_destination in raised.value.message
    authfile = _authfile(tmp_path, host, username, password)
    copied = local.copy(notebook["reference"], private_destination, dest_authfile=authfile, tls_verify=False,
                        tools=tools)
    assert local.inspect(private_destination, authfile=authfile, tls_verify=False, tools=tools)["digest"] == \
        copied["digest"]
