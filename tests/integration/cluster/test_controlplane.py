"""Proof that the test cluster is a real Kubernetes API server with the rules the modules meet in production.

Each test talks to the API through the ``kubernetes`` Python client or through ``kubernetes.core.k8s``;
the same tests pass against a real cluster (``MLOPS_NOTEBOOKS_EXISTING_CLUSTER=1``).
"""

from __future__ import annotations

import json
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Callable

import pytest
import yaml
from kubernetes import client, watch
from kubernetes.client.rest import ApiException

import controlplane  # tests/cluster, on sys.path through conftest.py
from playbook_runner import run_playbook

RESTRICTED = {
    "pod-security.kubernetes.io/enforce": "restricted",
    "pod-security.kubernetes.io/enforce-version": "latest",
}
IMAGE_GROUP, IMAGE_VERSION = "image.openshift.io", "v1"
TEKTON_GROUP, TEKTON_VERSION = "tekton.dev", "v1"


def _pod(name: str, image: str, *, restricted_compliant: bool) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "main", "image": image, "command": ["python3", "-c", "print('hello')"]}
    pod: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {"restartPolicy": "Never", "containers": [container]},
    }
    if restricted_compliant:
        pod["spec"]["securityContext"] = {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}
        container["securityContext"] = {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "runAsUser": 1000920000,
        }
    return pod


def _image(cluster: Any) -> str:
    return f"{cluster.registry}/testimages/python-only:latest" if cluster.registry else "python:3.12-slim"


def _eventually(check: Callable[[], Any], timeout: float = 15.0) -> Any:
    """Retry ``check`` until it stops raising (RBAC and discovery caches update within moments)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return check()
        except (ApiException, AssertionError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def _status_message(error: ApiException) -> str:
    try:
        return json.loads(error.body)["message"]
    except (TypeError, ValueError, KeyError):
        return str(error.body)


# ------------------------------------------------------------------------------------------- discovery


def test_discovery_lists_openshift_image_and_tekton_groups(cluster: Any) -> None:
    with cluster.api_client() as api_client:
        groups = {group.name: group for group in client.ApisApi(api_client).get_api_versions().groups}
        assert groups[IMAGE_GROUP].preferred_version.version == IMAGE_VERSION
        assert groups[TEKTON_GROUP].preferred_version.version == TEKTON_VERSION

        custom = client.CustomObjectsApi(api_client)
        image_resources = {r.name: r for r in custom.get_api_resources(IMAGE_GROUP, IMAGE_VERSION).resources}
        assert image_resources["imagestreams"].kind == "ImageStream"
        assert "is" in (image_resources["imagestreams"].short_names or [])
        assert "imagestreams/status" in image_resources

        tekton_resources = {r.name for r in custom.get_api_resources(TEKTON_GROUP, TEKTON_VERSION).resources}
        assert {"pipelines", "tasks", "pipelineruns", "taskruns", "pipelineruns/status", "taskruns/status"} <= (
            tekton_resources
        )


# ------------------------------------------------------------------------------------ admission, RBAC


def test_pod_security_restricted_rejects_a_non_compliant_pod_and_admits_a_compliant_one(cluster: Any) -> None:
    namespace = cluster.create_namespace("restricted", labels=RESTRICTED)
    cluster.wait_for_service_account(namespace)
    with cluster.api_client() as api_client:
        core = client.CoreV1Api(api_client)
        with pytest.raises(ApiException) as rejected:
            core.create_namespaced_pod(namespace, _pod("root-pod", _image(cluster), restricted_compliant=False))
        assert rejected.value.status == 403
        message = _status_message(rejected.value)
        assert 'violates PodSecurity "restricted:latest"' in message
        assert "allowPrivilegeEscalation != false" in message

        created = core.create_namespaced_pod(namespace, _pod("good-pod", _image(cluster), restricted_compliant=True))
        assert created.metadata.name == "good-pod"
        assert core.read_namespaced_pod("good-pod", namespace).spec.security_context.run_as_non_root is True


def test_service_account_has_exactly_the_rights_of_its_role(cluster: Any, namespace: str) -> None:
    sa_kubeconfig = cluster.service_account_kubeconfig(namespace, "reader")
    with cluster.api_client(sa_kubeconfig) as sa_client:
        sa_core = client.CoreV1Api(sa_client)
        with pytest.raises(ApiException) as denied:
            sa_core.list_namespaced_config_map(namespace)
        assert denied.value.status == 403
        assert f"system:serviceaccount:{namespace}:reader" in _status_message(denied.value)

        with cluster.api_client() as admin_client:
            rbac = client.RbacAuthorizationV1Api(admin_client)
            rbac.create_namespaced_role(
                namespace,
                {
                    "metadata": {"name": "configmap-reader"},
                    "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list", "watch"]}],
                },
            )
            rbac.create_namespaced_role_binding(
                namespace,
                {
                    "metadata": {"name": "reader-reads-configmaps"},
                    "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "configmap-reader"},
                    "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": namespace}],
                },
            )

        _eventually(lambda: sa_core.list_namespaced_config_map(namespace))
        for forbidden in (
            lambda: sa_core.create_namespaced_config_map(namespace, {"metadata": {"name": "nope"}}),
            lambda: sa_core.list_namespaced_secret(namespace),
            lambda: sa_core.list_namespaced_config_map("default"),
        ):
            with pytest.raises(ApiException) as still_denied:
                forbidden()
            assert still_denied.value.status == 403


# ------------------------------------------------------------------------- watch, apply and conflicts


def test_watch_reports_added_modified_deleted(cluster: Any, namespace: str) -> None:
    with cluster.api_client() as api_client:
        core = client.CoreV1Api(api_client)
        start = core.list_namespaced_config_map(namespace).metadata.resource_version
        core.create_namespaced_config_map(namespace, {"metadata": {"name": "watched"}, "data": {"step": "1"}})
        core.patch_namespaced_config_map("watched", namespace, {"data": {"step": "2"}})
        core.delete_namespaced_config_map("watched", namespace)

        seen: list[tuple[str, str | None]] = []
        watcher = watch.Watch()
        for event in watcher.stream(
            core.list_namespaced_config_map, namespace, resource_version=start, timeout_seconds=30
        ):
            if event["object"].metadata.name != "watched":
                continue
            seen.append((event["type"], (event["object"].data or {}).get("step")))
            if event["type"] == "DELETED":
                watcher.stop()
        assert seen == [("ADDED", "1"), ("MODIFIED", "2"), ("DELETED", "2")]


def test_server_side_apply_tracks_managers_and_reports_conflicts(cluster: Any, namespace: str) -> None:
    apply = "application/apply-patch+yaml"
    with cluster.api_client() as api_client:
        core = client.CoreV1Api(api_client)
        manifest = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "applied"}, "data": {"owner": "first"}}
        core.patch_namespaced_config_map("applied", namespace, manifest, field_manager="first", _content_type=apply)

        manifest["data"] = {"owner": "second"}
        with pytest.raises(ApiException) as conflict:
            core.patch_namespaced_config_map("applied", namespace, manifest, field_manager="second", _content_type=apply)
        assert conflict.value.status == 409
        assert 'conflict with "first"' in _status_message(conflict.value)

        forced = core.patch_namespaced_config_map(
            "applied", namespace, manifest, field_manager="second", force=True, _content_type=apply
        )
        assert forced.data == {"owner": "second"}
        assert {entry.manager for entry in forced.metadata.managed_fields} == {"second"}


def test_update_with_a_stale_resource_version_is_a_409_conflict(cluster: Any, namespace: str) -> None:
    with cluster.api_client() as api_client:
        core = client.CoreV1Api(api_client)
        core.create_namespaced_config_map(namespace, {"metadata": {"name": "contended"}, "data": {"n": "0"}})
        first = core.read_namespaced_config_map("contended", namespace)
        second = core.read_namespaced_config_map("contended", namespace)
        first.data = {"n": "1"}
        core.replace_namespaced_config_map("contended", namespace, first)
        second.data = {"n": "2"}
        with pytest.raises(ApiException) as conflict:
            core.replace_namespaced_config_map("contended", namespace, second)
        assert conflict.value.status == 409
        assert "the object has been modified" in _status_message(conflict.value)
        assert core.read_namespaced_config_map("contended", namespace).data == {"n": "1"}


# ------------------------------------------------------------------------------- OpenShift and Tekton


def _image_stream(name: str, tags: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": f"{IMAGE_GROUP}/{IMAGE_VERSION}",
        "kind": "ImageStream",
        "metadata": {"name": name},
        "spec": {"lookupPolicy": {"local": True}, **({"tags": tags} if tags is not None else {})},
    }


def test_imagestream_crud(cluster: Any, namespace: str) -> None:
    plural = "imagestreams"
    # A reference tag is never imported, on OpenShift as in the simulator.
    tag = {
        "name": "v1",
        "from": {"kind": "DockerImage", "name": "quay.io/example/notebook:v1"},
        "reference": True,
        "referencePolicy": {"type": "Source"},
    }
    with cluster.api_client() as api_client:
        custom = client.CustomObjectsApi(api_client)
        created = custom.create_namespaced_custom_object(
            IMAGE_GROUP, IMAGE_VERSION, namespace, plural, _image_stream("notebook", [tag])
        )
        assert created["spec"]["tags"][0]["from"]["name"] == "quay.io/example/notebook:v1"

        patched = custom.patch_namespaced_custom_object(
            IMAGE_GROUP, IMAGE_VERSION, namespace, plural, "notebook", {"spec": {"lookupPolicy": {"local": False}}}
        )
        assert patched["spec"]["lookupPolicy"] == {"local": False}
        assert patched["spec"]["tags"][0]["name"] == "v1"

        listed = custom.list_namespaced_custom_object(IMAGE_GROUP, IMAGE_VERSION, namespace, plural)
        assert [item["metadata"]["name"] for item in listed["items"]] == ["notebook"]
        custom.delete_namespaced_custom_object(IMAGE_GROUP, IMAGE_VERSION, namespace, plural, "notebook")
        with pytest.raises(ApiException) as gone:
            custom.get_namespaced_custom_object(IMAGE_GROUP, IMAGE_VERSION, namespace, plural, "notebook")
        assert gone.value.status == 404


def test_imagestream_crd_has_a_status_subresource_and_a_schema(cluster: Any, namespace: str) -> None:
    if cluster.existing:
        pytest.skip("checks the ImageStream CRD of tests/cluster/crds; a real OpenShift serves ImageStreams itself")
    plural = "imagestreams"
    digest = "sha256:" + "a" * 64
    stream = _image_stream("statusful")  # no spec tags: no controller writes its status
    stream["status"] = {"dockerImageRepository": "ignored-on-create"}
    with cluster.api_client() as api_client:
        custom = client.CustomObjectsApi(api_client)
        created = custom.create_namespaced_custom_object(IMAGE_GROUP, IMAGE_VERSION, namespace, plural, stream)
        assert "dockerImageRepository" not in created.get("status", {})

        status = {
            "status": {
                "dockerImageRepository": "image-registry.local/ns/statusful",
                "tags": [
                    {
                        "tag": "v1",
                        "items": [
                            {
                                "created": "2024-01-01T00:00:00Z",
                                "dockerImageReference": f"quay.io/example/notebook@{digest}",
                                "image": digest,
                                "generation": 1,
                            }
                        ],
                    }
                ],
            }
        }
        updated = custom.patch_namespaced_custom_object_status(
            IMAGE_GROUP, IMAGE_VERSION, namespace, plural, "statusful", status
        )
        assert updated["status"]["tags"][0]["items"][0]["image"] == digest
        spec_update = custom.patch_namespaced_custom_object(
            IMAGE_GROUP, IMAGE_VERSION, namespace, plural, "statusful",
            {"spec": {"lookupPolicy": {"local": False}}, "status": {"dockerImageRepository": "ignored"}},
        )
        assert spec_update["status"]["dockerImageRepository"] == "image-registry.local/ns/statusful"

        invalid = _image_stream("invalid", [{"from": {"kind": "DockerImage"}}])
        with pytest.raises(ApiException) as rejected:
            custom.create_namespaced_custom_object(IMAGE_GROUP, IMAGE_VERSION, namespace, plural, invalid)
        assert rejected.value.status == 422
        assert "spec.tags[0].name: Required value" in _status_message(rejected.value)


def test_tekton_resources_crud(cluster: Any, namespace: str) -> None:
    task = {
        "apiVersion": f"{TEKTON_GROUP}/{TEKTON_VERSION}",
        "kind": "Task",
        "metadata": {"name": "echo"},
        "spec": {"steps": [{"name": "echo", "image": "python:3.12-slim", "script": "echo hello"}]},
    }
    pipeline = {
        "apiVersion": f"{TEKTON_GROUP}/{TEKTON_VERSION}",
        "kind": "Pipeline",
        "metadata": {"name": "echo"},
        "spec": {"tasks": [{"name": "echo", "taskRef": {"name": "echo"}}]},
    }
    # A pending PipelineRun is not started (Tekton's spec.status), so only this test acts on it.
    run = {
        "apiVersion": f"{TEKTON_GROUP}/{TEKTON_VERSION}",
        "kind": "PipelineRun",
        "metadata": {"name": "echo-run"},
        "spec": {"pipelineRef": {"name": "echo"}, "status": "PipelineRunPending"},
    }
    with cluster.api_client() as api_client:
        custom = client.CustomObjectsApi(api_client)
        for plural, body in (("tasks", task), ("pipelines", pipeline), ("pipelineruns", run)):
            custom.create_namespaced_custom_object(TEKTON_GROUP, TEKTON_VERSION, namespace, plural, body)
        read = custom.get_namespaced_custom_object(TEKTON_GROUP, TEKTON_VERSION, namespace, "pipelines", "echo")
        assert read["spec"]["tasks"][0]["taskRef"] == {"name": "echo"}

        task["spec"]["steps"][0]["script"] = "echo changed"
        task["metadata"] = custom.get_namespaced_custom_object(
            TEKTON_GROUP, TEKTON_VERSION, namespace, "tasks", "echo"
        )["metadata"]
        replaced = custom.replace_namespaced_custom_object(TEKTON_GROUP, TEKTON_VERSION, namespace, "tasks", "echo", task)
        assert replaced["spec"]["steps"][0]["script"] == "echo changed"

        runs = custom.list_namespaced_custom_object(TEKTON_GROUP, TEKTON_VERSION, namespace, "pipelineruns")
        assert [item["metadata"]["name"] for item in runs["items"]] == ["echo-run"]
        for plural, name in (("pipelineruns", "echo-run"), ("pipelines", "echo"), ("tasks", "echo")):
            custom.delete_namespaced_custom_object(TEKTON_GROUP, TEKTON_VERSION, namespace, plural, name)
        assert custom.list_namespaced_custom_object(TEKTON_GROUP, TEKTON_VERSION, namespace, "tasks")["items"] == []


# ------------------------------------------------------------------------------------ kubernetes.core


def test_kubernetes_core_k8s_meets_the_same_rules(cluster: Any, namespace: str, tmp_path: Path) -> None:
    restricted_namespace = cluster.create_namespace("restricted", labels=RESTRICTED)
    cluster.wait_for_service_account(restricted_namespace)
    sa_kubeconfig = cluster.service_account_kubeconfig(namespace, "nobody")
    admin = str(cluster.kubeconfig)
    stream = {
        "apiVersion": f"{IMAGE_GROUP}/{IMAGE_VERSION}",
        "kind": "ImageStream",
        "metadata": {"name": "from-ansible", "namespace": namespace},
        "spec": {"lookupPolicy": {"local": False}},
    }
    config_map = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "from-ansible", "namespace": namespace},
        "data": {"owner": "ansible"},
    }
    pod = _pod("root-pod", _image(cluster), restricted_compliant=False)
    pod["metadata"]["namespace"] = restricted_namespace
    playbook = [
        {
            "name": "kubernetes.core against the test cluster",
            "hosts": "localhost",
            "connection": "local",
            "gather_facts": False,
            "vars": {"ansible_python_interpreter": "{{ ansible_playbook_python }}"},
            "tasks": [
                {"name": "create imagestream", "kubernetes.core.k8s": {"kubeconfig": admin, "definition": stream}},
                {
                    "name": "read imagestream",
                    "kubernetes.core.k8s_info": {
                        "kubeconfig": admin,
                        "api_version": f"{IMAGE_GROUP}/{IMAGE_VERSION}",
                        "kind": "ImageStream",
                        "namespace": namespace,
                        "name": "from-ansible",
                    },
                },
                {
                    "name": "server-side apply",
                    "kubernetes.core.k8s": {
                        "kubeconfig": admin,
                        "definition": config_map,
                        "apply": True,
                        "server_side_apply": {"field_manager": "ansible-test"},
                    },
                },
                {
                    "name": "server-side apply conflict",
                    "kubernetes.core.k8s": {
                        "kubeconfig": admin,
                        "definition": {**config_map, "data": {"owner": "someone else"}},
                        "apply": True,
                        "server_side_apply": {"field_manager": "other-manager", "force_conflicts": False},
                    },
                    "ignore_errors": True,
                },
                {
                    "name": "non-compliant pod",
                    "kubernetes.core.k8s": {"kubeconfig": admin, "definition": pod},
                    "ignore_errors": True,
                },
                {
                    "name": "list as a service account without a role",
                    "kubernetes.core.k8s_info": {
                        "kubeconfig": str(sa_kubeconfig),
                        "kind": "ConfigMap",
                        "namespace": namespace,
                    },
                    "ignore_errors": True,
                },
            ],
        }
    ]
    path = tmp_path / "kubernetes-core.yml"
    path.write_text(yaml.safe_dump(playbook, sort_keys=False))
    run = run_playbook(str(path), timeout=300)

    assert run.result("create imagestream")["changed"] is True, run.result("create imagestream").get("msg")
    resources = run.result("read imagestream")["resources"]
    assert [r["metadata"]["name"] for r in resources] == ["from-ansible"]

    applied = run.result("server-side apply")
    assert applied["changed"] is True
    assert applied["result"]["data"] == {"owner": "ansible"}
    conflict = run.result("server-side apply conflict")
    assert conflict.get("failed") is True, conflict
    assert conflict.get("reason") == "Conflict", conflict.get("msg")
    assert '"code":409' in conflict["msg"] and 'conflict with \\"ansible-test\\"' in conflict["msg"]

    rejected = run.result("non-compliant pod")
    assert rejected.get("failed") is True, rejected
    assert rejected.get("reason") == "Forbidden", rejected.get("msg")
    assert "violates PodSecurity" in rejected["msg"]

    denied = run.result("list as a service account without a role")
    assert denied.get("failed") is True, denied
    assert '"code":403' in denied["msg"], denied.get("msg")
    assert 'cannot list resource \\"configmaps\\"' in denied["msg"]


# ------------------------------------------------------------------------------ the local control plane


def _local_control_plane(cluster: Any) -> Any:
    if cluster.control_plane is None:
        pytest.skip("checks the local control plane's own files; this session uses an existing cluster")
    return cluster.control_plane


def test_cli_prints_exactly_the_two_lines_of_the_running_control_plane(cluster: Any) -> None:
    plane = _local_control_plane(cluster)
    script = Path(__file__).resolve().parents[2] / "cluster" / "controlplane.py"
    expected = [f"KUBECONFIG={plane.kubeconfig}", f"REGISTRY={plane.registry or ''}"]
    for command in ("env", "up"):  # "up" on a running control plane reuses it
        done = subprocess.run(
            [sys.executable, str(script), "--state-dir", str(plane.state_dir), command],
            capture_output=True, text=True, timeout=120, check=False,
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.splitlines() == expected
    assert "already running" in done.stderr
    assert (plane.state_dir / "env").read_text().splitlines() == expected


def test_api_server_requires_tls_with_its_ca_and_trusts_only_its_client_ca(cluster: Any, tmp_path: Path) -> None:
    plane = _local_control_plane(cluster)
    certs = plane.certs
    url = plane.server + "/api/v1/namespaces"

    untrusting = ssl.create_default_context()  # the system CAs do not include the cluster CA
    with pytest.raises(urllib.error.URLError) as unverified:
        urllib.request.urlopen(url, context=untrusting, timeout=10)
    assert isinstance(unverified.value.reason, ssl.SSLCertVerificationError)

    # Without a client certificate the caller is anonymous, and RBAC lets anonymous list nothing.
    anonymous = ssl.create_default_context(cafile=certs["ca"]["cert"])
    with pytest.raises(urllib.error.HTTPError) as forbidden:
        urllib.request.urlopen(url, context=anonymous, timeout=10)
    assert forbidden.value.code == 403
    assert 'User \\"system:anonymous\\" cannot list resource \\"namespaces\\"' in forbidden.value.read().decode()

    # The admin certificate of another cluster (same names, another CA) does not authenticate.
    other_cluster = controlplane.generate_certificates(tmp_path / "other-pki")
    foreign = ssl.create_default_context(cafile=certs["ca"]["cert"])
    foreign.load_cert_chain(other_cluster["admin"]["cert"], other_cluster["admin"]["key"])
    with pytest.raises(urllib.error.HTTPError) as unauthorized:
        urllib.request.urlopen(url, context=foreign, timeout=10)
    assert unauthorized.value.code == 401

    admin = ssl.create_default_context(cafile=certs["ca"]["cert"])
    admin.load_cert_chain(certs["admin"]["cert"], certs["admin"]["key"])
    with urllib.request.urlopen(url, context=admin, timeout=10) as response:
        assert response.status == 200
        assert json.loads(response.read())["kind"] == "NamespaceList"
