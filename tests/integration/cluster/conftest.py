"""The ``cluster`` fixture: a real Kubernetes API server for the integration tests.

By default the session starts its own local control plane (tests/cluster/controlplane.py) in
``build/cluster-pytest-<pid>`` and stops it at the end. With ``MLOPS_NOTEBOOKS_EXISTING_CLUSTER=1`` it uses
the cluster of ``$KUBECONFIG`` instead (for example one started with ``make cluster-up``, or a real
OpenShift cluster), and the registry of ``$MLOPS_NOTEBOOKS_REGISTRY`` (or the ``REGISTRY=`` line of the
``env`` file next to that kubeconfig).
"""

from __future__ import annotations

import os
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import pytest

CLUSTER_DIR = Path(__file__).resolve().parents[2] / "cluster"
REPO_ROOT = CLUSTER_DIR.parent.parent
if str(CLUSTER_DIR) not in sys.path:
    sys.path.insert(0, str(CLUSTER_DIR))

import controlplane  # noqa: E402  (tests/cluster, put on sys.path above)
import sa_kubeconfig  # noqa: E402


@dataclass
class Cluster:
    """A running cluster: where its kubeconfig and registry are, and helpers that act on it."""

    kubeconfig: Path
    registry: str | None
    existing: bool
    work_dir: Path
    control_plane: controlplane.ControlPlane | None = None
    _namespaces: list[str] = field(default_factory=list)

    def api_client(self, kubeconfig: str | os.PathLike[str] | None = None) -> Any:
        """A ``kubernetes.client.ApiClient`` for the admin kubeconfig, or for ``kubeconfig``."""
        from kubernetes import config

        return config.new_client_from_config(config_file=str(kubeconfig or self.kubeconfig))

    def service_account_kubeconfig(self, namespace: str, name: str, *, create: bool = True) -> Path:
        """A kubeconfig acting as ServiceAccount ``namespace/name`` (created when missing)."""
        path = self.work_dir / f"sa-{namespace}-{name}.kubeconfig"
        return sa_kubeconfig.write_service_account_kubeconfig(self.kubeconfig, namespace, name, path, create=create)

    def create_namespace(self, prefix: str = "test", labels: dict[str, str] | None = None) -> str:
        """Create a namespace with a unique name; it is deleted when the session ends."""
        from kubernetes import client

        name = f"{prefix}-{uuid.uuid4().hex[:8]}"
        with self.api_client() as api_client:
            client.CoreV1Api(api_client).create_namespace(
                client.V1Namespace(metadata=client.V1ObjectMeta(name=name, labels=labels or {}))
            )
        self._namespaces.append(name)
        return name

    def wait_for_service_account(self, namespace: str, name: str = "default", timeout: float = 60.0) -> None:
        """Wait until a ServiceAccount exists (the controller manager makes ``default`` in new namespaces).

        Pods can only be admitted once their ServiceAccount exists."""
        from kubernetes import client
        from kubernetes.client.rest import ApiException

        deadline = time.monotonic() + timeout
        with self.api_client() as api_client:
            core = client.CoreV1Api(api_client)
            while True:
                try:
                    core.read_namespaced_service_account(name, namespace)
                    return
                except ApiException as error:
                    if error.status != 404 or time.monotonic() > deadline:
                        raise
                time.sleep(0.2)

    def delete_namespaces(self) -> None:
        from kubernetes import client
        from kubernetes.client.rest import ApiException

        with self.api_client() as api_client:
            core = client.CoreV1Api(api_client)
            for name in self._namespaces:
                try:
                    core.delete_namespace(name)
                except ApiException as error:
                    if error.status != 404:
                        raise
        self._namespaces.clear()


def _registry_of_existing_cluster(kubeconfig: Path) -> str | None:
    if os.environ.get("MLOPS_NOTEBOOKS_REGISTRY"):
        return os.environ["MLOPS_NOTEBOOKS_REGISTRY"]
    env_file = kubeconfig.parent / "env"
    if env_file.exists():
        for line in env_file.read_text().splitlines():
            if line.startswith("REGISTRY=") and line.split("=", 1)[1]:
                return line.split("=", 1)[1]
    return None


def _remove_abandoned_control_planes() -> None:
    """Stop the control planes of test sessions that were killed before they could stop them."""
    for state_dir in (REPO_ROOT / "build").glob("cluster-pytest-*"):
        try:
            os.kill(int(state_dir.name.rsplit("-", 1)[1]), 0)
        except ValueError:
            continue
        except ProcessLookupError:
            controlplane.down(state_dir)
        except PermissionError:  # another user's live session
            continue


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    work_dir = tmp_path_factory.mktemp("cluster")
    if os.environ.get("MLOPS_NOTEBOOKS_EXISTING_CLUSTER") == "1":
        if not os.environ.get("KUBECONFIG"):
            pytest.fail("MLOPS_NOTEBOOKS_EXISTING_CLUSTER=1 needs KUBECONFIG to name the cluster's kubeconfig")
        kubeconfig = Path(os.environ["KUBECONFIG"].split(os.pathsep)[0]).resolve()
        existing = Cluster(kubeconfig, _registry_of_existing_cluster(kubeconfig), True, work_dir)
        yield existing
        existing.delete_namespaces()
        return
    _remove_abandoned_control_planes()
    state_dir = REPO_ROOT / "build" / f"cluster-pytest-{os.getpid()}"
    try:
        plane = controlplane.up(state_dir)
    except controlplane.ControlPlaneError as error:
        pytest.fail(f"the local control plane did not start: {error}", pytrace=False)
    local = Cluster(plane.kubeconfig, plane.registry, False, work_dir, control_plane=plane)
    try:
        yield local
    finally:
        controlplane.down(state_dir)


@pytest.fixture
def namespace(cluster: Cluster) -> str:
    """A fresh namespace whose ``default`` ServiceAccount exists, so pods can be created at once."""
    name = cluster.create_namespace()
    cluster.wait_for_service_account(name)
    return name
