"""The simulator: plays the controllers a real OpenShift cluster has and the local control plane lacks.

It is one Python process (``python -m simulator``) that watches the API like a real controller and writes status:

- **kubelet and scheduler** (kubelet.py): a Node ``mlops-sim-node`` (Ready, InternalIP 127.0.0.1, kubelet port);
  pods are bound to it and run with ``buildah run --isolation chroot`` in their image from this machine's
  registries, as ``runAsUser`` or else the namespace's ``openshift.io/sa.scc.uid-range`` start or else 1000920000,
  group 0; phase, exit codes, termination messages, restarts, activeDeadlineSeconds; ``pods/log`` through the
  API server to the kubelet endpoint. Images from anywhere else fail with ErrImagePull / ImagePullBackOff.
- **image import** (imports.py): ImageStream tags from DockerImage references get ``status.tags`` with digests, or
  the ``ImportSuccess=False`` condition. A plain-HTTP registry (like the local one) needs
  ``importPolicy.insecure: true``, as on OpenShift.
- **builds** (builds.py): Builds run with buildah (Docker strategy with an inline or git Dockerfile; Source
  strategy with the builder's assemble script) and push to the registry; ImageStreamTag outputs land in
  ``<registry>/<namespace>/<stream>`` and the stream's status; logs are served as ``builds/log``.
- **Tekton** (tekton.py): PipelineRuns create TaskRuns; TaskRuns run their steps with buildah.

Scenario hooks: the annotation ``sim.mlops.test/scenario`` makes an object take a failure path:

=========================  ===========================================================================
object                     values
=========================  ===========================================================================
Build                      ``fail`` (Failed, GenericBuildFailed, with a log), ``hang`` (Running until
                           ``status.cancelled: true`` or deletion: then Cancelled)
ImageStream                ``fail-import`` (ImportSuccess=False, InternalError), ``hang`` (never imported)
Pod                        ``fail`` (containers end with exit code 1 at once, phase Failed),
                           ``hang`` (stays Pending/ContainerCreating until deleted),
                           ``image-pull-error`` (ErrImagePull, then ImagePullBackOff)
PipelineRun / TaskRun      ``fail`` (the first step of each TaskRun fails; annotations are copied from the
                           PipelineRun to its TaskRuns), ``hang`` (Running until cancelled or timed out)
=========================  ===========================================================================

``start(state_dir, kubeconfig, registry, certs)`` runs it in the background (log: STATE/logs/simulator.log) and
returns once it is ready; ``stop(state_dir)`` stops it (running pods and builds are killed, buildah containers
removed). The buildah image store lives in the cache directory (``$MLOPS_NOTEBOOKS_CACHE``, else
``~/.cache/mlops-notebooks``), so pulled images are reused across clusters: ``simulator-storage-overlay`` when the
kernel lets buildah mount overlay (containers start without copying their image), else ``simulator-storage`` (vfs).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

NAME = "simulator"
STOP_TIMEOUT_SECONDS = 30.0

if str(Path(__file__).resolve().parent.parent) not in sys.path:  # tests/cluster, for the shared process helpers
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from background import start_component, stop_component  # noqa: E402  pylint: disable=wrong-import-position


def start(state_dir: str, kubeconfig: str, registry: str | None, certs: dict[str, Any]) -> int:
    """Start the simulator in its own session and wait until its controllers run and its Node is Ready."""
    del certs  # read from STATE/certs.json by the process itself
    return start_component(NAME, state_dir, kubeconfig, registry, STOP_TIMEOUT_SECONDS)


def stop(state_dir: str) -> None:
    """End the process started by ``start`` for this state directory (SIGTERM, then SIGKILL)."""
    stop_component(NAME, state_dir, STOP_TIMEOUT_SECONDS)
