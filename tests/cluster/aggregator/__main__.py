"""``python -m aggregator --state-dir S --kubeconfig K --certs S/certs.json [--registry R]``.

Installs the storage CRDs, serves build.openshift.io/v1 over TLS on a free loopback port, registers the
APIService, writes ``S/aggregator/ready`` (with the port) once the API server reports it Available, and runs
until SIGTERM (then removes the APIService, so discovery stays clean).
"""

from __future__ import annotations

import argparse
import base64
import logging
import signal
import sys
import threading
from pathlib import Path
from typing import Any

import json

from . import server
from .translate import GROUP, STORAGE_GROUP, VERSION
from .upstream import Upstream, condition_true

LOG = logging.getLogger("aggregator")
APISERVICE_NAME = f"{VERSION}.{GROUP}"
PORT_NAME = "https"
MANAGED_BY = {"app.kubernetes.io/managed-by": "mlops-notebooks-test-cluster"}


def storage_crd(plural: str, kind: str, columns: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{STORAGE_GROUP}", "labels": MANAGED_BY},
        "spec": {
            "group": STORAGE_GROUP,
            "scope": "Namespaced",
            "names": {"plural": plural, "singular": kind.lower(), "kind": kind, "listKind": f"{kind}List"},
            "versions": [{
                "name": VERSION,
                "served": True,
                "storage": True,
                # The aggregator validates and defaults; storage keeps whatever it is given.
                "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}},
                "additionalPrinterColumns": columns,
            }],
        },
    }


STORAGE_CRDS = [
    storage_crd("buildconfigs", "BuildConfig", [
        {"name": "Type", "type": "string", "jsonPath": ".spec.strategy.type"},
        {"name": "Latest", "type": "integer", "jsonPath": ".status.lastVersion"},
    ]),
    storage_crd("builds", "Build", [
        {"name": "Type", "type": "string", "jsonPath": ".spec.strategy.type"},
        {"name": "Status", "type": "string", "jsonPath": ".status.phase"},
        {"name": "Started", "type": "date", "jsonPath": ".status.startTimestamp"},
    ]),
]


def install_storage(upstream: Upstream) -> None:
    for crd in STORAGE_CRDS:
        path = f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{crd['metadata']['name']}"
        upstream.apply(path, crd)
        upstream.wait_for(path, lambda obj: condition_true(obj, "Established"), 60, f"CRD {crd['metadata']['name']}")


def read_requestheader_auth(upstream: Upstream, timeout: float = 60) -> server.RequestHeaderAuth:
    path = "/api/v1/namespaces/kube-system/configmaps/extension-apiserver-authentication"
    configmap = upstream.wait_for(path, lambda obj: bool(obj.get("data")), timeout,
                                  "ConfigMap kube-system/extension-apiserver-authentication")
    return server.RequestHeaderAuth.from_configmap(configmap["data"])


def register(upstream: Upstream, port: int, ca_pem: bytes, service: dict[str, str]) -> None:
    """An ExternalName Service ``localhost`` and the APIService naming it with our port.

    Endpoints may not hold loopback addresses, so the Service is an ExternalName one: kube-apiserver (with the
    default ``--enable-aggregator-routing=false``) then dials ``https://localhost:<APIService port>`` and checks
    the certificate for ``<service>.<namespace>.svc``."""
    namespace, name = service["namespace"], service["name"]
    upstream.apply(f"/api/v1/namespaces/{namespace}", {
        "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace, "labels": MANAGED_BY}})
    service_path = f"/api/v1/namespaces/{namespace}/services/{name}"
    existing = upstream.json("GET", service_path)
    if existing[0] == 200 and (existing[1].get("spec") or {}).get("type") != "ExternalName":
        upstream.request("DELETE", service_path)  # a Service's type cannot always change in place
    upstream.apply(service_path, {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": namespace, "labels": MANAGED_BY},
        "spec": {"type": "ExternalName", "externalName": "localhost",
                 "ports": [{"name": PORT_NAME, "port": port, "protocol": "TCP"}]},
    })
    path = f"/apis/apiregistration.k8s.io/v1/apiservices/{APISERVICE_NAME}"
    upstream.apply(path, {
        "apiVersion": "apiregistration.k8s.io/v1",
        "kind": "APIService",
        "metadata": {"name": APISERVICE_NAME, "labels": MANAGED_BY},
        "spec": {
            "group": GROUP,
            "version": VERSION,
            "service": {"namespace": namespace, "name": name, "port": port},
            "caBundle": base64.b64encode(ca_pem).decode(),
            # OpenShift's own priorities for this group.
            "groupPriorityMinimum": 9900,
            "versionPriority": 15,
        },
    })
    upstream.wait_for(path, lambda obj: condition_true(obj, "Available"), 90, f"APIService {APISERVICE_NAME}")


def unregister(upstream: Upstream) -> None:
    # An APIService whose server is gone makes every client's discovery report an error: remove it on shutdown.
    upstream.request("DELETE", f"/apis/apiregistration.k8s.io/v1/apiservices/{APISERVICE_NAME}", timeout=10)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="aggregator", description=__doc__)
    parser.add_argument("--state-dir", required=True, type=Path, help="the control plane's state directory")
    parser.add_argument("--kubeconfig", required=True, help="an administrator's kubeconfig")
    parser.add_argument("--certs", required=True, type=Path, help="certs.json of the control plane")
    parser.add_argument("--registry", default="", help="unused; accepted so every component takes the same flags")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    own_dir = args.state_dir / "aggregator"
    log_dir = args.state_dir / "buildlogs"
    own_dir.mkdir(parents=True, exist_ok=True)
    log_dir.mkdir(parents=True, exist_ok=True)
    ready_file = own_dir / "ready"
    ready_file.unlink(missing_ok=True)
    try:
        certs = json.loads(args.certs.read_text())
        upstream = Upstream(args.kubeconfig)
        auth = read_requestheader_auth(upstream)
        install_storage(upstream)
        api = server.BuildAPI(upstream, auth, log_dir)
        serving = certs["aggregator_serving"]
        https = server.serve(api, server.make_ssl_context(Path(serving["cert"]), Path(serving["key"]), auth.client_ca_pem))
        port = https.server_address[1]
        LOG.info("serving %s/%s on https://127.0.0.1:%d", GROUP, VERSION, port)
        register(upstream, port, Path(certs["serving_ca"]["cert"]).read_bytes(), certs["aggregator_service"])
    except Exception as error:  # start-up failures are reported in one line, for the log the starter shows
        LOG.error("start-up failed: %s", error)
        return 1
    ready_file.write_text(f"{port}\n")
    LOG.info("APIService %s is Available", APISERVICE_NAME)
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    signal.signal(signal.SIGINT, lambda *_: stopping.set())
    while not stopping.wait(1.0):
        pass
    try:
        unregister(upstream)
    except Exception as error:  # the API server may already be gone at cluster-down
        LOG.info("could not remove the APIService: %s", error)
    ready_file.unlink(missing_ok=True)
    https.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
