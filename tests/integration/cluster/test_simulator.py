"""The controllers the simulator plays (tests/cluster/simulator), exercised through the API like a user would:
image import, the kubelet (pods, logs, termination messages, deadlines) and Tekton runs.

They need the local registry and its test images, and the simulator's node, so they are skipped with a reason
on a cluster without them (a real cluster cannot reach this machine's registry).
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest
import requests
from kubernetes import client
from kubernetes.client.rest import ApiException

IMAGE_GROUP, TEKTON_GROUP, VERSION = "image.openshift.io", "tekton.dev", "v1"
RESTRICTED_POD_CONTEXT = {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}
RESTRICTED_CONTAINER_CONTEXT = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}
POD_TIMEOUT_SECONDS = 300


@pytest.fixture
def registry(cluster: Any) -> str:
    if cluster.existing:
        pytest.skip("needs the local control plane's simulator and registry")
    if not cluster.registry:
        pytest.skip("no local registry: the test images were not built (scripts/bootstrap.sh images)")
    return cluster.registry


def _manifest_digest(registry: str, repository: str, tag: str) -> str:
    response = requests.get(f"http://{registry}/v2/{repository}/manifests/{tag}", timeout=10, headers={"Accept": ", ".join([
        "application/vnd.oci.image.index.v1+json", "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.oci.image.manifest.v1+json", "application/vnd.docker.distribution.manifest.v2+json"])})
    response.raise_for_status()
    return response.headers["Docker-Content-Digest"]


def _wait(read: Any, done: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = read()
        if done(value):
            return value
        assert time.monotonic() < deadline, f"{what} not reached in {timeout:.0f} s; last: {value}"
        time.sleep(0.5)


def _pod_status(core: client.CoreV1Api, namespace: str, name: str, phases: tuple[str, ...]) -> client.V1Pod:
    return _wait(lambda: core.read_namespaced_pod(name, namespace), lambda pod: pod.status.phase in phases,
                 POD_TIMEOUT_SECONDS, f"pod {name} in {phases}")


def _stream_tag(objects: client.CustomObjectsApi, namespace: str, name: str, tag: str) -> dict[str, Any] | None:
    stream = objects.get_namespaced_custom_object(IMAGE_GROUP, VERSION, namespace, "imagestreams", name)
    return next((entry for entry in (stream.get("status") or {}).get("tags") or [] if entry["tag"] == tag), None)


def _image_stream(name: str, source: str, insecure: bool = True, annotations: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "image.openshift.io/v1", "kind": "ImageStream",
        "metadata": {"name": name, "annotations": annotations or {}},
        "spec": {"lookupPolicy": {"local": False}, "tags": [{
            "name": "latest", "from": {"kind": "DockerImage", "name": source},
            "importPolicy": {"insecure": insecure}, "referencePolicy": {"type": "Source"}}]},
    }


def test_node_is_ready_with_a_kubelet_endpoint(cluster: Any, registry: str) -> None:
    with cluster.api_client() as api:
        nodes = client.CoreV1Api(api).list_node().items
    assert [node.metadata.name for node in nodes] == ["mlops-sim-node"]
    node = nodes[0]
    ready = next(c for c in node.status.conditions if c.type == "Ready")
    assert ready.status == "True"
    assert {(a.type, a.address) for a in node.status.addresses} >= {("InternalIP", "127.0.0.1")}
    assert node.status.daemon_endpoints.kubelet_endpoint.port > 0


def test_imagestream_import_resolves_the_digest(cluster: Any, namespace: str, registry: str) -> None:
    source = f"{registry}/testimages/notebook:latest"
    expected = _manifest_digest(registry, "testimages/notebook", "latest")
    with cluster.api_client() as api:
        objects = client.CustomObjectsApi(api)
        objects.create_namespaced_custom_object(IMAGE_GROUP, VERSION, namespace, "imagestreams", _image_stream("nb", source))
        tag = _wait(lambda: _stream_tag(objects, namespace, "nb", "latest"), lambda t: t and t.get("items"), 60,
                    "an imported tag")
        stream = objects.get_namespaced_custom_object(IMAGE_GROUP, VERSION, namespace, "imagestreams", "nb")
    item = tag["items"][0]
    assert item["image"] == expected
    assert item["dockerImageReference"] == f"{registry}/testimages/notebook@{expected}"
    assert item["created"] and item["generation"] >= 1
    assert not tag.get("conditions")
    assert stream["status"]["dockerImageRepository"] == f"{registry}/{namespace}/nb"


def test_imagestream_import_failures_are_conditions(cluster: Any, namespace: str, registry: str) -> None:
    cases = {
        "missing": (_image_stream("missing", f"{registry}/testimages/does-not-exist:latest"), "NotFound"),
        # the local registry speaks plain HTTP: without importPolicy.insecure the import fails, as on OpenShift
        "secure": (_image_stream("secure", f"{registry}/testimages/notebook:latest", insecure=False), "InternalError"),
        "scenario": (_image_stream("scenario", f"{registry}/testimages/notebook:latest",
                                   annotations={"sim.mlops.test/scenario": "fail-import"}), "InternalError"),
    }
    with cluster.api_client() as api:
        objects = client.CustomObjectsApi(api)
        for manifest, _reason in cases.values():
            objects.create_namespaced_custom_object(IMAGE_GROUP, VERSION, namespace, "imagestreams", manifest)
        for name, (_manifest, reason) in cases.items():
            tag = _wait(lambda: _stream_tag(objects, namespace, name, "latest"), lambda t: t and t.get("conditions"), 60,
                        f"an import condition on {name}")
            condition = tag["conditions"][0]
            assert (condition["type"], condition["status"], condition["reason"]) == ("ImportSuccess", "False", reason), name
            assert condition["message"]
            assert not tag.get("items")


def _image_stream_import(name: str, images: dict[str, str], resource_version: str | None = None) -> dict[str, Any]:
    return {"apiVersion": f"{IMAGE_GROUP}/{VERSION}", "kind": "ImageStreamImport",
            "metadata": {"name": name, "resourceVersion": resource_version},
            "spec": {"import": True, "images": [
                {"from": {"kind": "DockerImage", "name": source}, "to": {"name": tag},
                 "importPolicy": {"insecure": True}, "referencePolicy": {"type": "Local"}}
                for tag, source in images.items()]}}


def test_imagestreamimport_imports_into_the_stream_and_goes_away(cluster: Any, namespace: str, registry: str) -> None:
    expected = _manifest_digest(registry, "testimages/notebook", "latest")
    images = {"latest": f"{registry}/testimages/notebook:latest", "gone": f"{registry}/testimages/does-not-exist:latest"}
    with cluster.api_client() as api:
        objects = client.CustomObjectsApi(api)
        # no ImageStream yet: the import creates it, as on OpenShift
        objects.create_namespaced_custom_object(IMAGE_GROUP, VERSION, namespace, "imagestreamimports",
                                                _image_stream_import("nb", images))
        done = _wait(lambda: objects.get_namespaced_custom_object(IMAGE_GROUP, VERSION, namespace, "imagestreamimports", "nb"),
                     lambda isi: (isi.get("status") or {}).get("images"), 60, "status.images")
        results = {entry["tag"]: entry for entry in done["status"]["images"]}
        assert results["latest"]["status"]["status"] == "Success"
        assert results["latest"]["image"]["metadata"]["name"] == expected
        assert results["latest"]["image"]["dockerImageReference"] == f"{registry}/testimages/notebook@{expected}"
        assert (results["gone"]["status"]["status"], results["gone"]["status"]["reason"]) == ("Failure", "NotFound")
        assert results["gone"]["status"]["message"]
        stream = objects.get_namespaced_custom_object(IMAGE_GROUP, VERSION, namespace, "imagestreams", "nb")
        spec_tags = {entry["name"]: entry for entry in stream["spec"]["tags"]}
        assert spec_tags["latest"]["from"] == {"kind": "DockerImage", "name": images["latest"]}
        assert spec_tags["latest"]["referencePolicy"] == {"type": "Local"}
        assert spec_tags["latest"]["importPolicy"]["insecure"] is True
        tag = _wait(lambda: _stream_tag(objects, namespace, "nb", "latest"), lambda t: t and t.get("items"), 60, "an imported tag")
        assert tag["items"][0]["image"] == expected
        failed = _wait(lambda: _stream_tag(objects, namespace, "nb", "gone"), lambda t: t and t.get("conditions"), 60,
                       "the failed tag's condition")
        assert failed["conditions"][0]["reason"] == "NotFound"

        def isi_exists() -> bool:
            try:
                objects.get_namespaced_custom_object(IMAGE_GROUP, VERSION, namespace, "imagestreamimports", "nb")
                return True
            except ApiException as error:
                if error.status == 404:
                    return False
                raise

        # OpenShift stores no ImageStreamImport: the request is removed, so the same name can be imported again,
        # even with the stream's resourceVersion in its metadata (community.okd sends it; storage alone would refuse it)
        _wait(isi_exists, lambda exists: not exists, 60, "the ImageStreamImport deleted")
        objects.create_namespaced_custom_object(
            IMAGE_GROUP, VERSION, namespace, "imagestreamimports",
            _image_stream_import("nb", {"latest": images["latest"]}, stream["metadata"]["resourceVersion"]))
        again = _wait(lambda: objects.get_namespaced_custom_object(IMAGE_GROUP, VERSION, namespace, "imagestreamimports", "nb"),
                      lambda isi: (isi.get("status") or {}).get("images"), 60, "status.images of the re-import")
        assert again["status"]["images"][0]["image"]["metadata"]["name"] == expected
        unchanged = _stream_tag(objects, namespace, "nb", "latest")
    # the digest did not change: the re-import adds no history item
    assert [item["image"] for item in unchanged["items"]] == [expected]


def test_pod_runs_in_the_notebook_image_under_an_arbitrary_uid(cluster: Any, namespace: str, registry: str) -> None:
    marker = uuid.uuid4().hex
    script = (
        "import os, jupyterlab, nbclient\n"
        "print('uid', os.getuid(), 'gid', os.getgid(), flush=True)\n"
        "print('config', open('/config/greeting').read(), flush=True)\n"
        "open(os.path.join(os.environ['HOME'], 'probe'), 'w').write('ok')\n"
        f"open('/dev/termination-log', 'w').write('verdict {marker}')\n"
    )
    pod = {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "notebook"},
        "spec": {
            "restartPolicy": "Never",
            "securityContext": RESTRICTED_POD_CONTEXT,
            "containers": [{
                "name": "main", "image": f"{registry}/testimages/notebook:latest",
                "command": ["python", "-c", script],
                "env": [{"name": "HOME", "value": "/home/work"}],
                "securityContext": {**RESTRICTED_CONTAINER_CONTEXT, "runAsUser": 1000920000},
                "volumeMounts": [{"name": "home", "mountPath": "/home/work"},
                                 {"name": "config", "mountPath": "/config", "readOnly": True}],
            }],
            "volumes": [{"name": "home", "emptyDir": {}}, {"name": "config", "configMap": {"name": "greeting"}}],
        },
    }
    with cluster.api_client() as api:
        core = client.CoreV1Api(api)
        core.create_namespaced_config_map(namespace, {"metadata": {"name": "greeting"}, "data": {"greeting": "hello"}})
        core.create_namespaced_pod(namespace, pod)
        finished = _pod_status(core, namespace, "notebook", ("Succeeded", "Failed"))
        terminated = finished.status.container_statuses[0].state.terminated
        logs = core.read_namespaced_pod_log("notebook", namespace, container="main")
    assert finished.spec.node_name == "mlops-sim-node"
    assert finished.status.phase == "Succeeded", (terminated, logs)
    assert (terminated.exit_code, terminated.reason) == (0, "Completed")
    assert terminated.message == f"verdict {marker}"
    assert "uid 1000920000 gid 0" in logs
    assert "config hello" in logs


def test_failing_pod_reports_exit_code_and_log_fallback(cluster: Any, namespace: str, registry: str) -> None:
    pod = {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "failing"},
        "spec": {"restartPolicy": "Never", "containers": [{
            "name": "main", "image": f"{registry}/testimages/no-python:latest",
            "command": ["sh", "-c", "echo something broke >&2; exit 3"],
            "terminationMessagePolicy": "FallbackToLogsOnError",
        }]},
    }
    with cluster.api_client() as api:
        core = client.CoreV1Api(api)
        core.create_namespaced_pod(namespace, pod)
        finished = _pod_status(core, namespace, "failing", ("Succeeded", "Failed"))
    terminated = finished.status.container_statuses[0].state.terminated
    assert finished.status.phase == "Failed"
    assert (terminated.exit_code, terminated.reason) == (3, "Error")
    assert "something broke" in terminated.message


def test_active_deadline_and_unpullable_images(cluster: Any, namespace: str, registry: str) -> None:
    sleeper = {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "sleeper"},
        "spec": {"restartPolicy": "Never", "activeDeadlineSeconds": 5, "terminationGracePeriodSeconds": 1,
                 "containers": [{"name": "main", "image": f"{registry}/testimages/no-python:latest",
                                 "command": ["sleep", "600"]}]},
    }
    unpullable = {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "unpullable"},
        "spec": {"restartPolicy": "Never", "containers": [{"name": "main", "image": "quay.io/nowhere/nothing:1"}]},
    }
    with cluster.api_client() as api:
        core = client.CoreV1Api(api)
        core.create_namespaced_pod(namespace, sleeper)
        core.create_namespaced_pod(namespace, unpullable)
        failed = _pod_status(core, namespace, "sleeper", ("Succeeded", "Failed"))
        assert (failed.status.reason, failed.status.phase) == ("DeadlineExceeded", "Failed")
        waiting = _wait(lambda: core.read_namespaced_pod("unpullable", namespace),
                        lambda pod: pod.status.container_statuses and pod.status.container_statuses[0].state.waiting
                        and pod.status.container_statuses[0].state.waiting.reason in ("ErrImagePull", "ImagePullBackOff"),
                        60, "an image pull error")
        assert waiting.status.phase == "Pending"
        core.delete_namespaced_pod("unpullable", namespace)
        _wait(lambda: _exists(core, namespace, "unpullable"), lambda exists: not exists, 60, "the pod's deletion")


def _exists(core: client.CoreV1Api, namespace: str, name: str) -> bool:
    try:
        core.read_namespaced_pod(name, namespace)
        return True
    except ApiException as error:
        if error.status == 404:
            return False
        raise


def _task(name: str, script: str, image: str) -> dict[str, Any]:
    return {
        "apiVersion": "tekton.dev/v1", "kind": "Task", "metadata": {"name": name},
        "spec": {
            "params": [{"name": "word", "type": "string", "default": "none"}],
            "results": [{"name": "said", "type": "string"}],
            "workspaces": [{"name": "shared"}],
            "steps": [{"name": "say", "image": image, "script": script}],
        },
    }


def test_pipelineruns_succeed_and_fail(cluster: Any, namespace: str, registry: str) -> None:
    image = f"{registry}/testimages/no-python:latest"
    write = _task("write", 'echo "$(params.word)" > $(workspaces.shared.path)/word\n'
                           'printf "%s" "wrote-$(params.word)" > $(results.said.path)\n', image)
    read = _task("read", 'cat $(workspaces.shared.path)/word\nprintf "%s" "read-$(params.word)" > $(results.said.path)\n', image)
    broken = _task("broken", "echo failing on purpose\nexit 4\n", image)
    pipeline = {
        "apiVersion": "tekton.dev/v1", "kind": "Pipeline", "metadata": {"name": "relay"},
        "spec": {
            "params": [{"name": "word", "type": "string"}],
            "workspaces": [{"name": "ws"}],
            "results": [{"name": "final", "value": "$(tasks.second.results.said)"}],
            "tasks": [
                {"name": "first", "taskRef": {"name": "write"}, "params": [{"name": "word", "value": "$(params.word)"}],
                 "workspaces": [{"name": "shared", "workspace": "ws"}]},
                {"name": "second", "taskRef": {"name": "read"}, "runAfter": ["first"],
                 "params": [{"name": "word", "value": "$(tasks.first.results.said)"}],
                 "workspaces": [{"name": "shared", "workspace": "ws"}]},
            ],
        },
    }
    failing_pipeline = {
        "apiVersion": "tekton.dev/v1", "kind": "Pipeline", "metadata": {"name": "doomed"},
        "spec": {"workspaces": [{"name": "ws"}], "tasks": [
            {"name": "only", "taskRef": {"name": "broken"}, "workspaces": [{"name": "shared", "workspace": "ws"}]},
            {"name": "never", "taskRef": {"name": "read"}, "runAfter": ["only"],
             "workspaces": [{"name": "shared", "workspace": "ws"}]}]},
    }
    workspace = [{"name": "ws", "volumeClaimTemplate": {"spec": {"accessModes": ["ReadWriteOnce"],
                                                                 "resources": {"requests": {"storage": "1Mi"}}}}}]
    runs = {
        "relay-run": {"pipelineRef": {"name": "relay"}, "params": [{"name": "word", "value": "hello"}], "workspaces": workspace},
        "doomed-run": {"pipelineRef": {"name": "doomed"}, "workspaces": workspace},
    }
    with cluster.api_client() as api:
        objects = client.CustomObjectsApi(api)
        for manifest in (write, read, broken):
            objects.create_namespaced_custom_object(TEKTON_GROUP, VERSION, namespace, "tasks", manifest)
        for manifest in (pipeline, failing_pipeline):
            objects.create_namespaced_custom_object(TEKTON_GROUP, VERSION, namespace, "pipelines", manifest)
        for name, spec in runs.items():
            objects.create_namespaced_custom_object(TEKTON_GROUP, VERSION, namespace, "pipelineruns", {
                "apiVersion": "tekton.dev/v1", "kind": "PipelineRun", "metadata": {"name": name}, "spec": spec})

        def succeeded(name: str) -> dict[str, Any]:
            run = objects.get_namespaced_custom_object(TEKTON_GROUP, VERSION, namespace, "pipelineruns", name)
            return next((c for c in (run.get("status") or {}).get("conditions") or [] if c["type"] == "Succeeded"), {})

        good = _wait(lambda: succeeded("relay-run"), lambda c: c.get("status") in ("True", "False"), POD_TIMEOUT_SECONDS,
                     "relay-run finished")
        bad = _wait(lambda: succeeded("doomed-run"), lambda c: c.get("status") in ("True", "False"), POD_TIMEOUT_SECONDS,
                    "doomed-run finished")
        relay = objects.get_namespaced_custom_object(TEKTON_GROUP, VERSION, namespace, "pipelineruns", "relay-run")
        task_runs = objects.list_namespaced_custom_object(TEKTON_GROUP, VERSION, namespace, "taskruns",
                                                          label_selector="tekton.dev/pipelineRun=relay-run")["items"]
        doomed_runs = objects.list_namespaced_custom_object(TEKTON_GROUP, VERSION, namespace, "taskruns",
                                                            label_selector="tekton.dev/pipelineRun=doomed-run")["items"]
    assert (good["status"], good["reason"]) == ("True", "Succeeded"), good
    assert relay["status"]["results"] == [{"name": "final", "value": "read-wrote-hello"}]
    assert sorted(child["pipelineTaskName"] for child in relay["status"]["childReferences"]) == ["first", "second"]
    assert sorted(run["metadata"]["name"] for run in task_runs) == ["relay-run-first", "relay-run-second"]
    assert (bad["status"], bad["reason"]) == ("False", "Failed"), bad
    assert "Skipped: 1" in bad["message"]
    assert [run["metadata"]["name"] for run in doomed_runs] == ["doomed-run-only"]
    failed_condition = next(c for c in doomed_runs[0]["status"]["conditions"] if c["type"] == "Succeeded")
    assert failed_condition["status"] == "False" and "exited with code 4" in failed_condition["message"]
    assert doomed_runs[0]["status"]["steps"][0]["terminated"]["exitCode"] == 4


def test_taskrun_with_a_buildah_step_builds_and_pushes_an_image(cluster: Any, namespace: str, registry: str) -> None:
    target = f"{registry}/{namespace}/from-tekton:latest"
    task_run = {
        "apiVersion": "tekton.dev/v1", "kind": "TaskRun", "metadata": {"name": "build-image"},
        "spec": {
            "params": [{"name": "IMAGE", "value": target}],
            "workspaces": [{"name": "source", "emptyDir": {}}],
            "taskSpec": {
                "params": [{"name": "IMAGE", "type": "string"}],
                "workspaces": [{"name": "source"}],
                "results": [{"name": "IMAGE_DIGEST", "type": "string"}],
                "steps": [
                    {"name": "write-containerfile", "image": f"{registry}/testimages/no-python:latest",
                     "script": f"printf 'FROM {registry}/testimages/no-python:latest\\nRUN echo built > /built\\n' "
                               "> $(workspaces.source.path)/Containerfile\n"},
                    {"name": "build-and-push", "image": "quay.io/buildah/stable:v1",
                     "script": "buildah --storage-driver=vfs bud --isolation chroot --tls-verify=false "
                               "-f $(workspaces.source.path)/Containerfile -t $(params.IMAGE) $(workspaces.source.path)\n"
                               "buildah --storage-driver=vfs push --tls-verify=false "
                               "--digestfile $(results.IMAGE_DIGEST.path) $(params.IMAGE) docker://$(params.IMAGE)\n"},
                ],
            },
        },
    }
    with cluster.api_client() as api:
        objects = client.CustomObjectsApi(api)
        objects.create_namespaced_custom_object(TEKTON_GROUP, VERSION, namespace, "taskruns", task_run)

        def finished() -> dict[str, Any]:
            return objects.get_namespaced_custom_object(TEKTON_GROUP, VERSION, namespace, "taskruns", "build-image")

        run = _wait(finished, lambda r: any(c["type"] == "Succeeded" and c["status"] in ("True", "False")
                                            for c in (r.get("status") or {}).get("conditions") or []),
                    POD_TIMEOUT_SECONDS, "the TaskRun to finish")
    condition = next(c for c in run["status"]["conditions"] if c["type"] == "Succeeded")
    assert condition["status"] == "True", (condition, run["status"].get("steps"))
    digest = next(r["value"] for r in run["status"]["results"] if r["name"] == "IMAGE_DIGEST")
    assert digest == _manifest_digest(registry, f"{namespace}/from-tekton", "latest")


def test_taskrun_step_logs_come_through_pods_log(cluster: Any, namespace: str, registry: str) -> None:
    task_run = {
        "apiVersion": "tekton.dev/v1", "kind": "TaskRun", "metadata": {"name": "talk"},
        "spec": {"taskSpec": {"steps": [
            {"name": "hello", "image": f"{registry}/testimages/no-python:latest", "script": "echo hello from a step\n"},
            {"name": "bye", "image": f"{registry}/testimages/no-python:latest", "script": "echo bye >&2\nexit 2\n"},
        ]}},
    }
    with cluster.api_client() as api:
        objects = client.CustomObjectsApi(api)
        objects.create_namespaced_custom_object(TEKTON_GROUP, VERSION, namespace, "taskruns", task_run)
        run = _wait(lambda: objects.get_namespaced_custom_object(TEKTON_GROUP, VERSION, namespace, "taskruns", "talk"),
                    lambda r: any(c["type"] == "Succeeded" and c["status"] in ("True", "False")
                                  for c in (r.get("status") or {}).get("conditions") or []),
                    POD_TIMEOUT_SECONDS, "the TaskRun to finish")
        core = client.CoreV1Api(api)
        pod_name = run["status"]["podName"]
        pod = core.read_namespaced_pod(pod_name, namespace)
        hello = core.read_namespaced_pod_log(pod_name, namespace, container="step-hello")
        bye = core.read_namespaced_pod_log(pod_name, namespace, container="step-bye")
    assert pod.status.phase == "Failed"
    assert {s.name: s.state.terminated.exit_code for s in pod.status.container_statuses} == {"step-hello": 0, "step-bye": 2}
    assert hello == "hello from a step\n"
    assert bye == "bye\n"
