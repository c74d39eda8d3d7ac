"""Write a kubeconfig that acts as one ServiceAccount, so a test has exactly the rights of its Roles.

The token comes from the TokenRequest API (``serviceaccounts/<name>/token``), like ``kubectl create
token``; the cluster entry (server and CA) is copied from the admin kubeconfig. Works against the local
control plane and against any real cluster.

    sa_kubeconfig.py --kubeconfig ADMIN --namespace NS --service-account NAME --output PATH [--create]
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys
from pathlib import Path
from typing import Any

DEFAULT_EXPIRATION_SECONDS = 3600


class ServiceAccountKubeconfigError(RuntimeError):
    """The token could not be requested or the kubeconfig not written; the message says why."""


def _current_cluster(kubeconfig: dict[str, Any], kubeconfig_path: Path) -> dict[str, Any]:
    """The ``cluster`` entry of the current context, with a CA file turned into embedded data."""
    contexts = {entry["name"]: entry["context"] for entry in kubeconfig.get("contexts") or []}
    clusters = {entry["name"]: entry["cluster"] for entry in kubeconfig.get("clusters") or []}
    context = contexts.get(kubeconfig.get("current-context", ""))
    if context is None or context.get("cluster") not in clusters:
        raise ServiceAccountKubeconfigError(f"{kubeconfig_path} has no current context with a cluster")
    cluster = dict(clusters[context["cluster"]])
    ca_file = cluster.pop("certificate-authority", None)
    if ca_file:
        ca_path = Path(ca_file)
        if not ca_path.is_absolute():
            ca_path = kubeconfig_path.parent / ca_path
        cluster["certificate-authority-data"] = base64.b64encode(ca_path.read_bytes()).decode("ascii")
    return cluster


def write_service_account_kubeconfig(
    admin_kubeconfig: str | os.PathLike[str],
    namespace: str,
    service_account: str,
    output: str | os.PathLike[str],
    *,
    expiration_seconds: int = DEFAULT_EXPIRATION_SECONDS,
    create: bool = False,
) -> Path:
    """Request a token for ``namespace/service_account`` and write a kubeconfig using it to ``output``.

    With ``create=True`` the ServiceAccount is created first when it does not exist. Returns ``output``.
    """
    import yaml
    from kubernetes import client, config
    from kubernetes.client.rest import ApiException

    admin_path = Path(admin_kubeconfig)
    try:
        admin_config = yaml.safe_load(admin_path.read_text())
    except (OSError, yaml.YAMLError) as error:
        raise ServiceAccountKubeconfigError(f"cannot read kubeconfig {admin_path}: {error}") from error
    cluster = _current_cluster(admin_config, admin_path)

    api_client = config.new_client_from_config(config_file=str(admin_path))
    try:
        core = client.CoreV1Api(api_client)
        if create:
            try:
                core.create_namespaced_service_account(
                    namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name=service_account))
                )
            except ApiException as error:
                if error.status != 409:
                    raise
        request = client.AuthenticationV1TokenRequest(
            spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=expiration_seconds)
        )
        answer = core.create_namespaced_service_account_token(service_account, namespace, request)
    except ApiException as error:
        raise ServiceAccountKubeconfigError(
            f"requesting a token for ServiceAccount {namespace}/{service_account} failed: "
            f"HTTP {error.status} {error.reason}"
        ) from error
    finally:
        api_client.close()

    user = f"system:serviceaccount:{namespace}:{service_account}"
    kubeconfig = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "cluster", "cluster": cluster}],
        "users": [{"name": user, "user": {"token": answer.status.token}}],
        "contexts": [{"name": user, "context": {"cluster": "cluster", "user": user, "namespace": namespace}}],
        "current-context": user,
        "preferences": {},
    }
    output_path = Path(output)
    output_path.parent.mkdir(parents=True, exist_ok=True)
    output_path.write_text(json.dumps(kubeconfig, indent=2) + "\n")
    output_path.chmod(0o600)
    return output_path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write a kubeconfig that acts as a ServiceAccount.")
    parser.add_argument("--kubeconfig", default=os.environ.get("KUBECONFIG"), help="admin kubeconfig (default: $KUBECONFIG)")
    parser.add_argument("--namespace", required=True)
    parser.add_argument("--service-account", required=True)
    parser.add_argument("--output", required=True, help="where to write the new kubeconfig")
    parser.add_argument("--expiration-seconds", type=int, default=DEFAULT_EXPIRATION_SECONDS)
    parser.add_argument("--create", action="store_true", help="create the ServiceAccount when it does not exist")
    arguments = parser.parse_args(argv)
    if not arguments.kubeconfig:
        print("error: no kubeconfig: pass --kubeconfig or set KUBECONFIG", file=sys.stderr)
        return 2
    try:
        path = write_service_account_kubeconfig(
            arguments.kubeconfig,
            arguments.namespace,
            arguments.service_account,
            arguments.output,
            expiration_seconds=arguments.expiration_seconds,
            create=arguments.create,
        )
    except ServiceAccountKubeconfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
