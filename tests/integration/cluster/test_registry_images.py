"""The local registries (tests/cluster/registry.py) and the cached test images (tests/cluster/images.py).

These tests start their own registries in a temporary state directory (not the shared control plane), push
the test images (built once into the project cache, which can take minutes the first time) and check them
from the outside: skopeo for what the registries hold, ``buildah run`` for what the images contain.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Iterator

import pytest

CLUSTER_DIR = Path(__file__).resolve().parents[2] / "cluster"
if str(CLUSTER_DIR) not in sys.path:
    sys.path.insert(0, str(CLUSTER_DIR))

import images  # noqa: E402  (tests/cluster, put on sys.path above)
import registry  # noqa: E402

ARBITRARY_UID = "1000920000"  # as OpenShift assigns from a namespace's range; group 0 like OpenShift
_MISSING = [tool for tool in ("buildah", "skopeo", "debootstrap", "docker-registry") if shutil.which(tool) is None]
pytestmark = pytest.mark.skipif(
    bool(_MISSING), reason=f"{', '.join(_MISSING)} not installed: run `scripts/bootstrap.sh images`"
)

# A notebook that the image's own nbclient runs with its own ipykernel: proof the image executes notebooks.
_EXECUTE_NOTEBOOK = r"""
import json, os, nbformat, nbclient
notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("import os; print(6 * 7, os.getuid())")])
nbclient.NotebookClient(notebook, timeout=120, kernel_name="python3").execute()
with open(os.path.join(os.environ["HOME"], "written-by-test"), "w") as marker:
    marker.write("ok")
print(json.dumps({"stdout": notebook.cells[0].outputs[0]["text"], "home": os.environ["HOME"],
                  "marker": open(os.path.join(os.environ["HOME"], "written-by-test")).read()}))
"""


@pytest.fixture(scope="module")
def state_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    directory = tmp_path_factory.mktemp("registry-state")
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


class Buildah:
    """buildah with a throw-away vfs storage root, pulling from the test registries over plain HTTP.

    One working container per image serves all tests of this module: with vfs, each new container is a full copy
    of the image's file system."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.options = ["--root", str(root / "storage"), "--runroot", str(root / "run"), "--storage-driver", "vfs"]
        self.containers: dict[str, str] = {}

    def run_in(self, image: str, script: str, *, user: str = f"{ARBITRARY_UID}:0") -> subprocess.CompletedProcess[str]:
        if image not in self.containers:
            self.containers[image] = subprocess.run(
                ["buildah", *self.options, "from", "--quiet", "--tls-verify=false", image],
                capture_output=True, text=True, check=True, timeout=600,
            ).stdout.strip()
        return subprocess.run(
            ["buildah", *self.options, "run", "--isolation", "chroot", "--user", user,
             self.containers[image], "--", "/bin/sh", "-c", script],
            capture_output=True, text=True, check=False, timeout=300,
        )

    def remove_everything(self) -> None:
        subprocess.run(["buildah", *self.options, "rm", "--all"], capture_output=True, check=False)
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="module")
def buildah(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Buildah]:
    instance = Buildah(tmp_path_factory.mktemp("buildah"))
    yield instance
    instance.remove_everything()


def _skopeo_inspect(reference: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["skopeo", "inspect", "--tls-verify=false", *extra, f"docker://{reference}"],
                          capture_output=True, text=True, check=False, timeout=120)


def _v2_status(address: str) -> int | None:
    try:
        with urllib.request.urlopen(f"http://{address}/v2/", timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code
    except (urllib.error.URLError, OSError):
        return None


def test_registry_starts_once_and_stops(tmp_path: Path) -> None:
    address = registry.start(str(tmp_path))
    assert address.startswith("127.0.0.1:")
    assert _v2_status(address) == 200
    assert registry.start(str(tmp_path)) == address, "a second start reuses the running registry"
    assert registry.address_of(str(tmp_path)) == address
    registry.stop(str(tmp_path))
    assert _v2_status(address) is None
    assert registry.address_of(str(tmp_path)) is None
    assert (tmp_path / "registry" / "registry.log").read_text(), "the registry logs to its state directory"


def _registry_cli(*arguments: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(CLUSTER_DIR / "registry.py"), *arguments], cwd=cwd,
                          capture_output=True, text=True, check=False, timeout=120)


def _printed(output: str, key: str) -> str:
    return next(line.split("=", 1)[1] for line in output.splitlines() if line.startswith(f"{key}="))


def _process_alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.parametrize("command", ["start", "start-private"])
def test_registry_started_with_a_relative_state_dir_is_stopped(tmp_path: Path, command: str) -> None:
    # As from the repository root: `python tests/cluster/registry.py start-private build/cluster`.
    started = _registry_cli(command, "build/cluster", cwd=tmp_path)
    assert started.returncode == 0, started.stderr
    address = _printed(started.stdout, "PRIVATE_REGISTRY" if command == "start-private" else "REGISTRY")
    directory = tmp_path / "build" / "cluster" / ("registry-private" if command == "start-private" else "registry")
    pid = int((directory / "pid").read_text())
    try:
        assert str(directory / "config.yml").encode() in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0"), \
            "the registry's command line names its config by an absolute path"
        assert registry.address_of(str(tmp_path / "build" / "cluster"), private=command == "start-private") == address, \
            "found from an absolute path too"
        again = _registry_cli(command, "build/cluster", cwd=tmp_path)
        assert again.returncode == 0, again.stderr
        assert int((directory / "pid").read_text()) == pid, "a second start reuses the running registry"

        stopped = _registry_cli("stop", "build/cluster", cwd=tmp_path)
        assert stopped.returncode == 0, stopped.stderr
        assert not _process_alive(pid)
        assert _v2_status(address) is None
        assert not (directory / "pid").exists()
    finally:  # a registry the code under test failed to stop: end it (it is ours: it runs in this test's directory)
        if _process_alive(pid) and os.readlink(f"/proc/{pid}/cwd") == str(tmp_path):
            os.kill(pid, signal.SIGKILL)


def test_images_are_in_the_registry_with_their_digests(test_images: dict, public_registry: str) -> None:
    layers: dict[str, list[str]] = {}
    for name in ("no-python", "python-only", "notebook"):
        reference = f"{public_registry}/testimages/{name}:latest"
        assert test_images[name]["reference"] == reference
        inspected = _skopeo_inspect(reference)
        assert inspected.returncode == 0, inspected.stderr
        details = json.loads(inspected.stdout)
        assert details["Digest"] == test_images[name]["digest"]
        assert details["Labels"]["io.mlops-notebooks.testimage"] == name
        layers[name] = details["Layers"]
    # Each image adds one layer on the one below, so the registry holds the Debian base once.
    assert layers["python-only"][:-1] == layers["no-python"]
    assert layers["notebook"][:-1] == layers["python-only"]


def test_second_run_reuses_the_cache(test_images: dict, public_registry: str) -> None:
    cache = images.ImageCache(images.default_cache_dir())
    build_log_before = cache.build_log.stat().st_mtime_ns if cache.build_log.exists() else None
    again = images.ensure_test_images(public_registry, images.default_cache_dir())
    assert {name: again[name] for name in ("no-python", "python-only", "notebook")} == {
        name: test_images[name] for name in ("no-python", "python-only", "notebook")
    }
    build_log_after = cache.build_log.stat().st_mtime_ns if cache.build_log.exists() else None
    assert build_log_after == build_log_before, "nothing was built the second time"


def test_notebook_image_executes_a_notebook_as_an_arbitrary_uid(test_images: dict, buildah: Buildah) -> None:
    image = test_images["notebook"]["reference"]
    # HOME outside the image's own home, as a pod with an emptyDir at /tmp would have it.
    script = f"mkdir -p /tmp/home && HOME=/tmp/home python - <<'EOF'\n{_EXECUTE_NOTEBOOK}\nEOF\n"
    completed = buildah.run_in(image, script)
    assert completed.returncode == 0, completed.stderr
    result = json.loads(completed.stdout.strip().splitlines()[-1])
    assert result == {"stdout": f"42 {ARBITRARY_UID}\n", "home": "/tmp/home", "marker": "ok"}


def test_notebook_image_defaults_suit_an_arbitrary_uid(test_images: dict, buildah: Buildah) -> None:
    script = (
        "python -c 'import jupyterlab, nbclient, ipykernel' && jupyter lab --version >/dev/null && "
        'echo "$(id -u):$(id -g) $HOME $(command -v python)" && touch "$HOME/x" && '
        "mkdir /opt/app-root/lib/added-by-arbitrary-uid && echo writable"
    )
    completed = buildah.run_in(test_images["notebook"]["reference"], script)
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.split() == [f"{ARBITRARY_UID}:0", "/opt/app-root/src", "/opt/app-root/bin/python",
                                        "writable"]


def test_python_only_image_has_python_without_jupyterlab(test_images: dict, buildah: Buildah) -> None:
    completed = buildah.run_in(
        test_images["python-only"]["reference"],
        "python -c 'import sys; print(sys.version_info.major)' && python -c 'import jupyterlab'",
    )
    assert completed.stdout.strip() == "3"
    assert completed.returncode != 0
    assert "No module named 'jupyterlab'" in completed.stderr


def test_no_python_image_has_no_python(test_images: dict, buildah: Buildah) -> None:
    completed = buildah.run_in(
        test_images["no-python"]["reference"],
        "for candidate in python3 python; do command -v $candidate && exit 1; done; "
        "ls /usr/bin | grep -c '^python' || echo no-python-here",
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert completed.stdout.split() == ["0", "no-python-here"]


def test_private_registry_refuses_anonymous_pulls_and_accepts_its_credentials(
    test_images: dict, private_registry: tuple[str, str, str], state_dir: Path, tmp_path: Path
) -> None:
    address, username, password = private_registry
    assert registry.private_of(str(state_dir)) == private_registry, "others find it from the state directory"
    reference = f"{address}/testimages/notebook:latest"
    assert test_images["private-notebook"]["reference"] == reference
    assert test_images["private-notebook"]["digest"] == test_images["notebook"]["digest"]

    anonymous = _skopeo_inspect(reference, "--no-creds")
    assert anonymous.returncode != 0
    assert "authentication required" in anonymous.stderr or "unauthorized" in anonymous.stderr

    wrong = _skopeo_inspect(reference, "--creds", f"{username}:not-the-password")
    assert wrong.returncode != 0

    with_creds = _skopeo_inspect(reference, "--creds", f"{username}:{password}")
    assert with_creds.returncode == 0, with_creds.stderr
    assert json.loads(with_creds.stdout)["Digest"] == test_images["notebook"]["digest"]

    # The form a pull secret takes (.dockerconfigjson): an auth file.
    auth_file = tmp_path / "auth.json"
    token = base64.b64encode(f"{username}:{password}".encode()).decode()
    auth_file.write_text(json.dumps({"auths": {address: {"auth": token}}}))
    with_auth_file = _skopeo_inspect(reference, "--authfile", str(auth_file))
    assert with_auth_file.returncode == 0, with_auth_file.stderr
    assert json.loads(with_auth_file.stdout)["Digest"] == test_images["notebook"]["digest"]
