"""build.openshift.io/v1 on the test cluster, through the API as the modules use it.

Locally the group is served by the aggregated API server in tests/cluster/aggregator (objects kept in the real API
server, RBAC through SubjectAccessReviews) and builds are run by the simulator. The same tests run against a real
OpenShift cluster (``MLOPS_NOTEBOOKS_EXISTING_CLUSTER=1``), except those that use the simulator's scenario hooks.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlencode

import pytest
import requests
from kubernetes import client, watch
from kubernetes.client.rest import ApiException

from playbook_runner import run_playbook

GROUP, VERSION = "build.openshift.io", "v1"
SCENARIO = "sim.mlops.test/scenario"
BUILD_TIMEOUT_SECONDS = 600
TERMINAL_PHASES = ("Complete", "Failed", "Error", "Cancelled")


def _eventually(check: Callable[[], Any], timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return check()
        except (ApiException, AssertionError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)


def _needs_simulator(cluster: Any) -> None:
    if cluster.existing:
        pytest.skip("uses the simulator's scenario hooks, which a real cluster does not have")


def _build_config(name: str, *, dockerfile: str = "FROM scratch\n", output: dict[str, Any] | None = None,
                  labels: dict[str, str] | None = None, base: str | None = None) -> dict[str, Any]:
    strategy: dict[str, Any] = {"dockerStrategy": {}}
    if base:
        strategy["dockerStrategy"]["from"] = {"kind": "DockerImage", "name": base}
    spec: dict[str, Any] = {"source": {"dockerfile": dockerfile}, "strategy": strategy}
    if output:
        spec["output"] = {"to": output}
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "BuildConfig",
        "metadata": {"name": name, "labels": labels or {}},
        "spec": spec,
    }


def _instantiate(api: client.ApiClient, namespace: str, name: str, annotations: dict[str, str] | None = None) -> dict[str, Any]:
    body = {"kind": "BuildRequest", "apiVersion": f"{GROUP}/{VERSION}",
            "metadata": {"name": name, "annotations": annotations or {}}}
    return _post(api, f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/buildconfigs/{name}/instantiate", body)


def _call(api: client.ApiClient, method: str, path: str, body: Any = None, query: list[tuple[str, str]] | None = None,
          content_type: str = "application/json", accept: str = "application/json") -> Any:
    """A raw request through the client's connection and credentials (subresources have no typed method)."""
    url = api.configuration.host + path + ("?" + urlencode(query) if query else "")
    headers = {"Accept": accept}
    for setting in api.configuration.auth_settings().values():
        if setting.get("in") == "header" and setting.get("value"):
            headers[setting["key"]] = setting["value"]
    if body is not None:
        headers["Content-Type"] = content_type
    response = api.call_api(method, url, header_params=headers, body=body)
    response.read()
    if response.status >= 400:
        raise ApiException(http_resp=response)
    return response


def _post(api: client.ApiClient, path: str, body: dict[str, Any]) -> dict[str, Any]:
    return json.loads(_call(api, "POST", path, body).data)


def _get_raw(api: client.ApiClient, path: str, query: list[tuple[str, str]] | None = None) -> str:
    return _call(api, "GET", path, query=query, accept="*/*").data.decode()


def _wait_for_phase(api: client.ApiClient, namespace: str, name: str, phases: tuple[str, ...],
                    timeout: float = BUILD_TIMEOUT_SECONDS) -> dict[str, Any]:
    objects = client.CustomObjectsApi(api)
    deadline = time.monotonic() + timeout
    while True:
        build = objects.get_namespaced_custom_object(GROUP, VERSION, namespace, "builds", name)
        phase = (build.get("status") or {}).get("phase")
        if phase in phases:
            return build
        assert time.monotonic() < deadline, f"build {name} still {phase} after {timeout:.0f} s: {build.get('status')}"
        time.sleep(1.0)


def test_discovery_shows_the_build_group_as_openshift_does(cluster: Any) -> None:
    with cluster.api_client() as api:
        groups = {group.name: group for group in client.ApisApi(api).get_api_versions().groups}
        assert groups[GROUP].preferred_version.group_version == "build.openshift.io/v1"
        resources = client.CustomObjectsApi(api).get_api_resources(GROUP, VERSION)
        by_name = {resource.name: resource for resource in resources.resources}
        assert {"buildconfigs", "buildconfigs/instantiate", "builds", "builds/log"} <= set(by_name)
        assert by_name["buildconfigs"].kind == "BuildConfig" and by_name["buildconfigs"].namespaced
        assert "bc" in (by_name["buildconfigs"].short_names or [])
        assert by_name["buildconfigs/instantiate"].kind == "BuildRequest"
        assert set(by_name["builds"].verbs) >= {"create", "delete", "get", "list", "patch", "update", "watch"}


def test_buildconfig_crud_watch_and_errors(cluster: Any, namespace: str) -> None:
    with cluster.api_client() as api:
        objects = client.CustomObjectsApi(api)
        events: list[tuple[str, str]] = []
        stream = watch.Watch()
        created_event = threading.Event()

        def follow() -> None:
            for event in stream.stream(objects.list_namespaced_custom_object, GROUP, VERSION, namespace, "buildconfigs",
                                       timeout_seconds=60):
                events.append((event["type"], event["object"]["metadata"]["name"]))
                assert event["object"]["apiVersion"] == "build.openshift.io/v1"
                created_event.set()
                if event["type"] == "DELETED":
                    stream.stop()

        watcher = threading.Thread(target=follow, daemon=True)
        watcher.start()
        time.sleep(1.0)  # the watch is open before the changes start
        created = objects.create_namespaced_custom_object(
            GROUP, VERSION, namespace, "buildconfigs", _build_config("nb", labels={"app": "notebook"}))
        # OpenShift's defaults
        assert created["apiVersion"] == "build.openshift.io/v1"
        assert created["spec"]["runPolicy"] == "Serial"
        assert created["spec"]["strategy"]["type"] == "Docker"
        assert created["spec"]["source"]["type"] == "Dockerfile"
        assert created["status"]["lastVersion"] == 0

        objects.create_namespaced_custom_object(GROUP, VERSION, namespace, "buildconfigs", _build_config("other"))
        listed = objects.list_namespaced_custom_object(GROUP, VERSION, namespace, "buildconfigs", label_selector="app=notebook")
        assert listed["kind"] == "BuildConfigList" and [item["metadata"]["name"] for item in listed["items"]] == ["nb"]

        patched = objects.patch_namespaced_custom_object(GROUP, VERSION, namespace, "buildconfigs", "nb",
                                                         {"metadata": {"labels": {"stage": "patched"}}})
        assert patched["metadata"]["labels"] == {"app": "notebook", "stage": "patched"}

        stale = dict(created)
        stale["metadata"] = dict(created["metadata"], labels={"stale": "yes"})
        with pytest.raises(ApiException) as conflict:
            objects.replace_namespaced_custom_object(GROUP, VERSION, namespace, "buildconfigs", "nb", stale)
        assert conflict.value.status == 409
        assert "buildconfigs.build.openshift.io" in json.loads(conflict.value.body)["message"]

        invalid = _build_config("broken")
        invalid["spec"]["strategy"] = {}
        with pytest.raises(ApiException) as unprocessable:
            objects.create_namespaced_custom_object(GROUP, VERSION, namespace, "buildconfigs", invalid)
        assert unprocessable.value.status == 422
        assert "spec.strategy" in json.loads(unprocessable.value.body)["message"]

        with pytest.raises(ApiException) as duplicate:
            objects.create_namespaced_custom_object(GROUP, VERSION, namespace, "buildconfigs", _build_config("nb"))
        assert duplicate.value.status == 409

        objects.delete_namespaced_custom_object(GROUP, VERSION, namespace, "buildconfigs", "nb")
        with pytest.raises(ApiException) as missing:
            objects.get_namespaced_custom_object(GROUP, VERSION, namespace, "buildconfigs", "nb")
        assert missing.value.status == 404
        assert json.loads(missing.value.body)["message"] == 'buildconfigs.build.openshift.io "nb" not found'
        watcher.join(timeout=30)
        assert created_event.is_set()
        assert ("ADDED", "nb") in events and ("MODIFIED", "nb") in events and ("DELETED", "nb") in events


def test_server_side_apply_and_field_manager_conflicts(cluster: Any, namespace: str) -> None:
    path = f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/buildconfigs/applied"
    manifest = _build_config("applied", labels={"owner": "first"})

    def apply(body: dict[str, Any], manager: str, force: bool = False) -> dict[str, Any]:
        with cluster.api_client() as api:
            query = [("fieldManager", manager)] + ([("force", "true")] if force else [])
            return json.loads(_call(api, "PATCH", path, json.dumps(body), query, "application/apply-patch+yaml").data)

    first = apply(manifest, "first-manager")
    assert first["metadata"]["labels"] == {"owner": "first"}
    assert {entry["manager"] for entry in first["metadata"]["managedFields"]} >= {"first-manager"}
    assert all(entry["apiVersion"] == "build.openshift.io/v1" for entry in first["metadata"]["managedFields"])
    second = _build_config("applied", labels={"owner": "second"})
    with pytest.raises(ApiException) as conflict:
        apply(second, "second-manager")
    assert conflict.value.status == 409
    forced = apply(second, "second-manager", force=True)
    assert forced["metadata"]["labels"] == {"owner": "second"}


def test_kubernetes_core_k8s_creates_and_keeps_a_buildconfig_idempotent(cluster: Any, namespace: str, tmp_path: Any) -> None:
    playbook = tmp_path / "bc.yml"
    definition = _build_config("through-ansible", labels={"app": "nb"})
    definition["metadata"]["namespace"] = namespace
    playbook.write_text(json.dumps([{
        "hosts": "localhost",
        "gather_facts": False,
        "tasks": [
            {"name": "bc", "kubernetes.core.k8s": {"kubeconfig": str(cluster.kubeconfig), "state": "present",
                                                   "definition": definition}},
            {"name": "bc again", "kubernetes.core.k8s": {"kubeconfig": str(cluster.kubeconfig), "state": "present",
                                                         "definition": definition}},
            {"name": "bc info", "kubernetes.core.k8s_info": {"kubeconfig": str(cluster.kubeconfig),
                                                             "api_version": "build.openshift.io/v1", "kind": "BuildConfig",
                                                             "namespace": namespace, "label_selectors": ["app=nb"]}},
        ],
    }]))
    run = run_playbook(str(playbook))
    assert run.rc == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert run.result("bc")["changed"] is True
    assert run.result("bc again")["changed"] is False
    resources = run.result("bc info")["resources"]
    assert [r["metadata"]["name"] for r in resources] == ["through-ansible"]
    assert resources[0]["spec"]["runPolicy"] == "Serial"


def test_instantiate_numbers_builds_and_bumps_last_version(cluster: Any, namespace: str) -> None:
    _needs_simulator(cluster)
    with cluster.api_client() as api:
        objects = client.CustomObjectsApi(api)
        objects.create_namespaced_custom_object(GROUP, VERSION, namespace, "buildconfigs", _build_config("numbered"))
        first = _instantiate(api, namespace, "numbered", {SCENARIO: "fail"})
        second = _instantiate(api, namespace, "numbered", {SCENARIO: "fail"})
        assert (first["kind"], first["metadata"]["name"]) == ("Build", "numbered-1")
        assert second["metadata"]["name"] == "numbered-2"
        assert second["metadata"]["labels"]["openshift.io/build-config.name"] == "numbered"
        assert second["metadata"]["annotations"]["openshift.io/build.number"] == "2"
        assert second["metadata"]["ownerReferences"][0]["kind"] == "BuildConfig"
        config = objects.get_namespaced_custom_object(GROUP, VERSION, namespace, "buildconfigs", "numbered")
        assert config["status"]["lastVersion"] == 2
        with pytest.raises(ApiException) as missing:
            _instantiate(api, namespace, "no-such-config")
        assert missing.value.status == 404


def test_failing_build_reports_reason_snippet_and_log(cluster: Any, namespace: str) -> None:
    _needs_simulator(cluster)
    with cluster.api_client() as api:
        client.CustomObjectsApi(api).create_namespaced_custom_object(GROUP, VERSION, namespace, "buildconfigs",
                                                                     _build_config("broken"))
        build = _instantiate(api, namespace, "broken", {SCENARIO: "fail"})
        finished = _wait_for_phase(api, namespace, build["metadata"]["name"], ("Complete", "Failed", "Error"), timeout=60)
        status = finished["status"]
        assert status["phase"] == "Failed"
        assert status["reason"] == "GenericBuildFailed"
        assert "simulated failure" in status["logSnippet"]
        assert status["completionTimestamp"] and isinstance(status["duration"], int)
        log = _get_raw(api, f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/builds/{build['metadata']['name']}/log")
        assert "simulated failure" in log


def test_a_hanging_build_is_cancelled_through_its_status(cluster: Any, namespace: str) -> None:
    _needs_simulator(cluster)
    with cluster.api_client() as api:
        objects = client.CustomObjectsApi(api)
        objects.create_namespaced_custom_object(GROUP, VERSION, namespace, "buildconfigs", _build_config("stuck"))
        name = _instantiate(api, namespace, "stuck", {SCENARIO: "hang"})["metadata"]["name"]
        _wait_for_phase(api, namespace, name, ("Running",), timeout=60)
        # `oc cancel-build` sets status.cancelled; the build controller stops the build.
        objects.patch_namespaced_custom_object(GROUP, VERSION, namespace, "builds", name, {"status": {"cancelled": True}})
        cancelled = _wait_for_phase(api, namespace, name, ("Cancelled", "Complete", "Failed"), timeout=60)
        assert cancelled["status"]["phase"] == "Cancelled"
        assert cancelled["status"]["reason"] == "CancelledBuild"


def test_rbac_decides_who_may_instantiate(cluster: Any, namespace: str) -> None:
    with cluster.api_client() as api:
        client.CustomObjectsApi(api).create_namespaced_custom_object(GROUP, VERSION, namespace, "buildconfigs",
                                                                     _build_config("guarded"))
    kubeconfig = cluster.service_account_kubeconfig(namespace, "robot")
    annotations = {SCENARIO: "fail"} if not cluster.existing else {}
    with cluster.api_client(kubeconfig) as robot:
        with pytest.raises(ApiException) as denied:
            _instantiate(robot, namespace, "guarded", annotations)
        assert denied.value.status == 403
        message = json.loads(denied.value.body)["message"]
        assert f'User "system:serviceaccount:{namespace}:robot" cannot create resource "buildconfigs/instantiate"' in message
        assert 'in API group "build.openshift.io"' in message
        with cluster.api_client() as api:
            rbac = client.RbacAuthorizationV1Api(api)
            rbac.create_namespaced_role(namespace, {
                "metadata": {"name": "build-starter"},
                "rules": [{"apiGroups": [GROUP], "resources": ["buildconfigs/instantiate"], "verbs": ["create"]},
                          {"apiGroups": [GROUP], "resources": ["builds", "builds/log"], "verbs": ["get", "list", "watch"]}],
            })
            rbac.create_namespaced_role_binding(namespace, {
                "metadata": {"name": "robot-starts-builds"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "build-starter"},
                "subjects": [{"kind": "ServiceAccount", "name": "robot", "namespace": namespace}],
            })
        build = _eventually(lambda: _instantiate(robot, namespace, "guarded", annotations))
        assert build["metadata"]["name"] == "guarded-1"
        with pytest.raises(ApiException) as still_denied:  # the Role allows no delete
            client.CustomObjectsApi(robot).delete_namespaced_custom_object(GROUP, VERSION, namespace, "buildconfigs", "guarded")
        assert still_denied.value.status == 403


def test_docker_build_with_inline_dockerfile_pushes_to_the_registry(cluster: Any, namespace: str) -> None:
    _needs_simulator(cluster)
    if not cluster.registry:
        pytest.skip("no local registry: the test images were not built (scripts/bootstrap.sh images)")
    marker = uuid.uuid4().hex
    dockerfile = f"FROM placeholder\nRUN echo {marker} > /built.txt\nLABEL built-by=test\n"
    config = _build_config("real", dockerfile=dockerfile, base=f"{cluster.registry}/testimages/no-python:latest",
                           output={"kind": "ImageStreamTag", "name": "built:v1"})
    with cluster.api_client() as api:
        # As on OpenShift, a build waits (New, InvalidOutputReference) until its output ImageStream exists.
        client.CustomObjectsApi(api).create_namespaced_custom_object("image.openshift.io", "v1", namespace, "imagestreams", {
            "apiVersion": "image.openshift.io/v1", "kind": "ImageStream", "metadata": {"name": "built"}, "spec": {}})
        client.CustomObjectsApi(api).create_namespaced_custom_object(GROUP, VERSION, namespace, "buildconfigs", config)
        build = _instantiate(api, namespace, "real")
        name = build["metadata"]["name"]
        followed = _get_raw(api, f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/builds/{name}/log", [("follow", "true")])
        finished = _wait_for_phase(api, namespace, name, ("Complete", "Failed", "Error", "Cancelled"))
        status = finished["status"]
        assert status["phase"] == "Complete", status.get("logSnippet") or followed[-2000:]
        digest = status["output"]["to"]["imageDigest"]
        assert digest.startswith("sha256:")
        assert status["outputDockerImageReference"] == f"{cluster.registry}/{namespace}/built:v1"
        assert marker in followed and "Push successful" in followed
        manifest = requests.get(f"http://{cluster.registry}/v2/{namespace}/built/manifests/v1", timeout=10, headers={
            "Accept": "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json"})
        assert manifest.status_code == 200 and manifest.headers["Docker-Content-Digest"] == digest
        stream = client.CustomObjectsApi(api).get_namespaced_custom_object("image.openshift.io", "v1", namespace,
                                                                           "imagestreams", "built")
        tag = next(entry for entry in stream["status"]["tags"] if entry["tag"] == "v1")
        assert tag["items"][0]["image"] == digest
        assert tag["items"][0]["dockerImageReference"] == f"{cluster.registry}/{namespace}/built@{digest}"


# -- builds that install packages, run for real and checked by running their image ------------------------------


def _needs_local_images(cluster: Any) -> None:
    _needs_simulator(cluster)
    if not cluster.registry:
        pytest.skip("no local registry: the test images were not built (scripts/bootstrap.sh images)")


def _image_stream(objects: client.CustomObjectsApi, namespace: str, name: str) -> None:
    # As on OpenShift, a build to an ImageStreamTag waits (New, InvalidOutputReference) until its ImageStream exists.
    objects.create_namespaced_custom_object("image.openshift.io", "v1", namespace, "imagestreams", {
        "apiVersion": "image.openshift.io/v1", "kind": "ImageStream", "metadata": {"name": name}, "spec": {}})


def _build_to_completion(api: client.ApiClient, namespace: str, config: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """Create the BuildConfig, start a build, follow its log; return the Complete build's status and the log."""
    objects = client.CustomObjectsApi(api)
    objects.create_namespaced_custom_object(GROUP, VERSION, namespace, "buildconfigs", config)
    name = _instantiate(api, namespace, config["metadata"]["name"])["metadata"]["name"]
    followed = _get_raw(api, f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/builds/{name}/log", [("follow", "true")])
    status = _wait_for_phase(api, namespace, name, TERMINAL_PHASES)["status"]
    assert status["phase"] == "Complete", status.get("logSnippet") or followed[-3000:]
    assert "Push successful" in followed
    return status, followed


def _run_pod(api: client.ApiClient, namespace: str, name: str, image: str,
             command: list[str] | None = None) -> tuple[str, str]:
    """Run a pod on ``image`` (its own command unless ``command`` is given) to its end: (phase, log)."""
    container: dict[str, Any] = {"name": "main", "image": image}
    if command:
        container["command"] = command
    core = client.CoreV1Api(api)
    core.create_namespaced_pod(namespace, {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
                                           "spec": {"restartPolicy": "Never", "containers": [container]}})
    deadline = time.monotonic() + BUILD_TIMEOUT_SECONDS
    while True:
        pod = core.read_namespaced_pod(name, namespace)
        if pod.status.phase in ("Succeeded", "Failed"):
            return pod.status.phase, core.read_namespaced_pod_log(name, namespace, container="main")
        assert time.monotonic() < deadline, f"pod {name} still {pod.status.phase} after {BUILD_TIMEOUT_SECONDS} s"
        time.sleep(1.0)


# A small pure-Python package the notebook image lacks, pinned, so the checks below know its version.
PACKAGE, PACKAGE_VERSION = "tabulate", "0.9.0"


def test_docker_build_installs_a_package_list_with_pip(cluster: Any, namespace: str) -> None:
    _needs_local_images(cluster)
    # The notebook image has pip in its venv (/opt/app-root) and PIP_CERT naming the host's CA bundle, which it
    # keeps. (python-only has pip too, but Debian's ca-certificates, installed with python3, regenerated its bundle
    # without the host's CAs, so pip cannot reach PyPI from it where the host trusts a proxy's CA.)
    base = f"{cluster.registry}/testimages/notebook:latest"
    dockerfile = (f"FROM placeholder\nRUN pip install --no-cache-dir {PACKAGE}=={PACKAGE_VERSION}\n"
                  f"RUN python -c 'import {PACKAGE}'\n")
    config = _build_config("packages", dockerfile=dockerfile, base=base,
                           output={"kind": "ImageStreamTag", "name": "with-packages:v1"})
    with cluster.api_client() as api:
        _image_stream(client.CustomObjectsApi(api), namespace, "with-packages")
        status, followed = _build_to_completion(api, namespace, config)
        assert f"Successfully installed {PACKAGE}-{PACKAGE_VERSION}" in followed
        digest = status["output"]["to"]["imageDigest"]
        phase, logs = _run_pod(api, namespace, "uses-packages", f"{cluster.registry}/{namespace}/with-packages@{digest}",
                               ["python", "-c", f"import {PACKAGE}, sys; print('version', {PACKAGE}.__version__, sys.prefix)"])
        assert phase == "Succeeded", logs
        assert f"version {PACKAGE_VERSION} /opt/app-root" in logs
        # The base image itself does not have the package: the build put it there.
        phase, logs = _run_pod(api, namespace, "base-lacks-packages", base, ["python", "-c", f"import {PACKAGE}"])
        assert phase == "Failed"
        assert f"No module named '{PACKAGE}'" in logs


# An S2I builder as OpenShift's Python builders are made: assemble and run scripts where the scripts-url label says,
# run as a non-root user of group 0.
S2I_BUILDER_DOCKERFILE = r"""FROM placeholder
RUN mkdir -p /usr/libexec/s2i \
 && printf '%s\n' '#!/bin/sh' 'set -e' 'echo "---> Installing the application requirements"' \
      'pip install --no-cache-dir -r /tmp/src/requirements.txt' 'cp -R /tmp/src/. /opt/app-root/src/' \
      > /usr/libexec/s2i/assemble \
 && printf '%s\n' '#!/bin/sh' 'exec python /opt/app-root/src/app.py' > /usr/libexec/s2i/run \
 && chmod 755 /usr/libexec/s2i/assemble /usr/libexec/s2i/run
LABEL io.openshift.s2i.scripts-url=image:///usr/libexec/s2i
USER 1001:0
"""


def _git_repository(directory: Path, files: dict[str, str]) -> str:
    """A local git repository holding ``files`` in one commit; its file:// URI."""
    directory.mkdir()
    for name, text in files.items():
        (directory / name).write_text(text)
    for command in (["init", "--quiet"], ["add", "."],
                    ["-c", "user.name=test", "-c", "user.email=test@example.invalid", "commit", "--quiet", "-m", "app"]):
        subprocess.run(["git", "-C", str(directory), *command], check=True, capture_output=True, timeout=60)
    return f"file://{directory}"


def test_source_strategy_build_runs_the_builders_assemble_script(cluster: Any, namespace: str, tmp_path: Path) -> None:
    _needs_local_images(cluster)
    if shutil.which("git") is None:
        pytest.skip("git is not installed: the simulator clones the build's source with it")
    marker = uuid.uuid4().hex
    source_uri = _git_repository(tmp_path / "app", {
        "requirements.txt": f"{PACKAGE}=={PACKAGE_VERSION}\n",
        "app.py": f"import os, {PACKAGE}\nprint('{marker}', {PACKAGE}.__version__, os.getuid(), os.getgid())\n",
    })
    builder_config = _build_config("s2i-builder", dockerfile=S2I_BUILDER_DOCKERFILE,
                                   base=f"{cluster.registry}/testimages/notebook:latest",
                                   output={"kind": "ImageStreamTag", "name": "s2i-builder:latest"})
    app_config = {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "BuildConfig", "metadata": {"name": "app"},
        "spec": {
            "source": {"git": {"uri": source_uri}},
            "strategy": {"sourceStrategy": {"from": {"kind": "ImageStreamTag", "name": "s2i-builder:latest"}}},
            "output": {"to": {"kind": "ImageStreamTag", "name": "app:latest"}},
        },
    }
    with cluster.api_client() as api:
        objects = client.CustomObjectsApi(api)
        for stream in ("s2i-builder", "app"):
            _image_stream(objects, namespace, stream)
        _build_to_completion(api, namespace, builder_config)
        status, followed = _build_to_completion(api, namespace, app_config)
        assert "Running /usr/libexec/s2i/assemble" in followed
        assert "---> Installing the application requirements" in followed
        assert f"Successfully installed {PACKAGE}-{PACKAGE_VERSION}" in followed
        digest = status["output"]["to"]["imageDigest"]
        # No command: the image's own, the builder's run script, as the build committed it.
        phase, logs = _run_pod(api, namespace, "app", f"{cluster.registry}/{namespace}/app@{digest}")
    assert phase == "Succeeded", logs
    printed_marker, version, uid, gid = logs.split()[:4]
    assert (printed_marker, version, gid) == (marker, PACKAGE_VERSION, "0")
    assert uid != "0", "the application runs as the builder's non-root user (or the cluster's arbitrary one)"
