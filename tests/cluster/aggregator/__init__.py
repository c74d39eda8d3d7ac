"""An aggregated API server for ``build.openshift.io/v1``, so the local control plane serves builds as OpenShift does.

A CRD cannot serve ``buildconfigs/instantiate`` or ``builds/log``, so this small server does, behind an APIService
``v1.build.openshift.io`` whose Service (``api`` in ``openshift-apiserver``, as on OpenShift) is an ExternalName
Service ``localhost``: Endpoints may not hold loopback addresses, and kube-apiserver's default cluster routing
dials ``https://localhost:<APIService port>``, verifying the certificate for ``api.openshift-apiserver.svc``
against the APIService's caBundle (the cluster CA, from certs.json):

- it trusts only kube-apiserver's front proxy (client certificate from the request-header CA with a name from
  ``requestheader-allowed-names``, both read from kube-system/extension-apiserver-authentication) and takes the
  user from ``X-Remote-User`` / ``X-Remote-Group`` / ``X-Remote-Extra-*``;
- it authorizes every request with a SubjectAccessReview, so RBAC on ``buildconfigs``, ``builds``,
  ``buildconfigs/instantiate`` and ``builds/log`` works as on OpenShift (a denial is a 403 Status);
- it keeps its objects in the real API server as ``buildstore.sim.mlops.test`` custom resources and renames
  group and apiVersion on the way through, so get, list (selectors, paging), watch, create, update, patch (merge,
  JSON, strategic treated as merge, server-side apply), delete and their Status errors are the API server's own;
- it defaults and validates BuildConfigs and Builds as OpenShift does (a 422 Status for a broken one);
- ``POST buildconfigs/<name>/instantiate`` bumps ``status.lastVersion`` and creates Build ``<name>-<n>``;
- ``GET builds/<name>/log`` serves ``STATE/buildlogs/<namespace>/<build>.log``, which the simulator writes while
  it runs the build (``follow=true`` streams until the build ends).

``start(state_dir, kubeconfig, registry, certs)`` runs it in the background (its log: STATE/logs/aggregator.log)
and returns once the APIService is Available; ``stop(state_dir)`` ends it.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

NAME = "aggregator"
STOP_TIMEOUT_SECONDS = 10.0

if str(Path(__file__).resolve().parent.parent) not in sys.path:  # tests/cluster, for the shared process helpers
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from background import start_component, stop_component  # noqa: E402  pylint: disable=wrong-import-position


def start(state_dir: str, kubeconfig: str, registry: str | None, certs: dict[str, Any]) -> int:
    """Start the server in its own session and wait until the APIService is Available; return its pid."""
    del certs  # read from STATE/certs.json by the process itself
    return start_component(NAME, state_dir, kubeconfig, registry, STOP_TIMEOUT_SECONDS)


def stop(state_dir: str) -> None:
    """End the process started by ``start`` for this state directory (SIGTERM, then SIGKILL)."""
    stop_component(NAME, state_dir, STOP_TIMEOUT_SECONDS)
