"""nbimage_import through ansible-playbook against the local control plane, its registries and the simulator.

Every module run acts as a ServiceAccount bound to exactly the Role documented in docs/nbimage_import.md (read from
that page), in a namespace that enforces the ``restricted`` Pod Security level; setup (secrets, a pre-made
ImageStream with a failure scenario) is done as admin. The images are the cached test images of tests/cluster:
a notebook image, one with Python but no jupyterlab, one without Python, and the notebook image in a registry that
requires basic auth.
"""

from __future__ import annotations

import base64
import json
import re
import sys
import threading
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import pytest
import yaml

CLUSTER_DIR = Path(__file__).resolve().parents[2] / "cluster"
INTEGRATION_DIR = Path(__file__).resolve().parents[1]
REPO_ROOT = CLUSTER_DIR.parent.parent
for directory in (CLUSTER_DIR, INTEGRATION_DIR):
    if str(directory) not in sys.path:
        sys.path.insert(0, str(directory))

import images  # noqa: E402  (tests/cluster, put on sys.path above)
import registry as registries  # noqa: E402
from playbook_runner import run_playbook  # noqa: E402

MODULE = "mlops.notebooks.nbimage_import"
IMAGE_GROUP, IMAGE_VERSION = "image.openshift.io", "v1"
SCENARIO_ANNOTATION = "sim.mlops.test/scenario"
SERVICE_ACCOUNT = "nbimage-importer"
NOTEBOOK_LABEL = "opendatahub.io/notebook-image"
PHASE = "opendatahub.io/notebook-image-phase"
MESSAGES = "opendatahub.io/notebook-image-messages"


def documented_role() -> dict[str, Any]:
    """The Role of docs/nbimage_import.md (the first YAML block of kind Role)."""
    text = (REPO_ROOT / "docs" / "nbimage_import.md").read_text()
    for block in re.findall(r"```yaml\n(.*?)```", text, flags=re.S):
        document = yaml.safe_load(block)
        if isinstance(document, dict) and document.get("kind") == "Role":
            return document
    raise AssertionError("docs/nbimage_import.md has no Role")


@pytest.fixture(scope="module")
def test_images(cluster: Any) -> dict[str, Any]:
    """The test images in the public registry and the notebook image in a basic-auth registry."""
    # A local control plane: this session's, or one started with `make cluster-up` (its state directory holds the
    # kubeconfig and the registries). A real cluster cannot reach this machine's registries or run the simulator.
    state_dir = cluster.control_plane.state_dir if cluster.control_plane is not None else Path(cluster.kubeconfig).parent
    if not (Path(state_dir) / "registry").is_dir():
        pytest.skip("needs the local control plane's simulator and registries (a real cluster cannot reach them)")
    if not cluster.registry:
        pytest.skip("no local registry: the test images were not built (scripts/bootstrap.sh images)")
    private = registries.start_private(str(state_dir))
    found = images.ensure_test_images(cluster.registry, str(images.default_cache_dir()), private=private)
    found["private-credentials"] = private
    return found


class Importer:
    """One namespace (restricted Pod Security), a ServiceAccount with the documented Role, and module runs as it."""

    def __init__(self, cluster: Any, tmp_path: Path) -> None:
        from kubernetes import client

        self.cluster = cluster
        self.tmp_path = tmp_path
        self.namespace = cluster.create_namespace("nbimport", labels={
            "pod-security.kubernetes.io/enforce": "restricted", "pod-security.kubernetes.io/enforce-version": "latest"})
        cluster.wait_for_service_account(self.namespace)
        self.api = cluster.api_client()
        self.core = client.CoreV1Api(self.api)
        self.objects = client.CustomObjectsApi(self.api)
        role = documented_role()
        role["metadata"]["namespace"] = self.namespace
        client.RbacAuthorizationV1Api(self.api).create_namespaced_role(self.namespace, role)
        self.kubeconfig = cluster.service_account_kubeconfig(self.namespace, SERVICE_ACCOUNT)
        client.RbacAuthorizationV1Api(self.api).create_namespaced_role_binding(self.namespace, {
            "metadata": {"name": "nbimage-import"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role["metadata"]["name"]},
            "subjects": [{"kind": "ServiceAccount", "name": SERVICE_ACCOUNT, "namespace": self.namespace}],
        })
        self.runs = 0

    def run(self, check: bool = False, diff: bool = False, **args: Any) -> dict[str, Any]:
        """Run the module once as the ServiceAccount; the task's result (with ``_stdout`` of the whole run)."""
        args.setdefault("namespace", self.namespace)
        args.setdefault("insecure", True)  # the local registries speak plain HTTP
        self.runs += 1
        playbook = [{
            "name": "nbimage_import", "hosts": "localhost", "connection": "local", "gather_facts": False,
            "vars": {"ansible_python_interpreter": "{{ ansible_playbook_python }}"},
            "tasks": [{"name": "import", MODULE: args, "ignore_errors": True}],
        }]
        path = self.tmp_path / f"import-{self.runs}.yml"
        path.write_text(yaml.safe_dump(playbook, sort_keys=False))
        outcome = run_playbook(str(path), check=check, diff=diff, env={"K8S_AUTH_KUBECONFIG": str(self.kubeconfig)})
        result = dict(outcome.result("import"))
        result["_stdout"] = outcome.stdout + outcome.stderr
        return result

    def stream(self, name: str) -> Optional[dict[str, Any]]:
        from kubernetes.client.rest import ApiException

        try:
            return self.objects.get_namespaced_custom_object(IMAGE_GROUP, IMAGE_VERSION, self.namespace, "imagestreams",
                                                             name)
        except ApiException as error:
            if error.status == 404:
                return None
            raise

    def pods(self) -> list[str]:
        """Names of the namespace's pods that are not being deleted."""
        return [pod.metadata.name for pod in self.core.list_namespaced_pod(self.namespace).items
                if pod.metadata.deletion_timestamp is None]

    def pull_secret(self, name: str, host: str, username: str, password: str) -> None:
        auth = base64.b64encode(f"{username}:{password}".encode()).decode()
        config = json.dumps({"auths": {host: {"username": username, "password": password, "auth": auth}}})
        body = {"metadata": {"name": name}, "type": "kubernetes.io/dockerconfigjson",
                "data": {".dockerconfigjson": base64.b64encode(config.encode()).decode()}}
        from kubernetes.client.rest import ApiException

        try:
            self.core.create_namespaced_secret(self.namespace, body)
        except ApiException as error:
            if error.status != 409:
                raise
            self.core.replace_namespaced_secret(name, self.namespace, body)

    def pods_created_during(self, action: Callable[[], Any]) -> tuple[Any, list[str]]:
        """Run ``action`` while watching the namespace's pods; (its return value, names of pods ADDED meanwhile)."""
        from kubernetes import client, watch

        start = self.core.list_namespaced_pod(self.namespace).metadata.resource_version
        added: list[str] = []
        stop = threading.Event()
        ready = threading.Event()

        errors: list[BaseException] = []

        def watch_pods() -> None:
            try:
                watcher = watch.Watch()
                version = start
                core = client.CoreV1Api(self.cluster.api_client())
                ready.set()
                while not stop.is_set():
                    for event in watcher.stream(core.list_namespaced_pod, self.namespace, resource_version=version,
                                                timeout_seconds=2):
                        version = event["object"].metadata.resource_version
                        if event["type"] == "ADDED":
                            added.append(event["object"].metadata.name)
            except BaseException as error:  # reported below: a broken watch must not look like "no pods"
                errors.append(error)
                ready.set()

        thread = threading.Thread(target=watch_pods, daemon=True)
        thread.start()
        ready.wait(10)
        try:
            value = action()
        finally:
            stop.set()
            thread.join(10)
        assert not errors, f"the pod watch failed: {errors[0]!r}"
        return value, added


@pytest.fixture
def importer(cluster: Any, tmp_path: Path, test_images: dict[str, Any]) -> Iterator[Importer]:
    made = Importer(cluster, tmp_path)
    yield made
    made.api.close()


def _annotations(stream: dict[str, Any]) -> dict[str, str]:
    return stream["metadata"].get("annotations") or {}


def _tag(stream: dict[str, Any]) -> dict[str, Any]:
    (tag,) = stream["spec"]["tags"]
    return tag


def test_good_image_is_published_and_a_second_run_writes_nothing(importer: Importer, test_images: dict) -> None:
    image = test_images["notebook"]
    result, first_pods = importer.pods_created_during(
        lambda: importer.run(name="team-notebook", from_image=image["reference"], display_name="Team notebook",
                             description="JupyterLab for the team", creator="tests", order=5))
    assert not result.get("failed"), result.get("msg")
    assert len(first_pods) == 1, "one validation pod (the watch sees pods: the empty list below means something)"
    assert result["changed"] is True and result["backend"] == "openshift"
    assert result["phase"] == "Succeeded" and result["messages"] == []
    assert result["digest"] == image["digest"]
    assert result["image"].endswith("/testimages/notebook@" + image["digest"])
    assert result["validation"]["passed"] is True and result["validation"]["reused"] is False
    checks = {check["name"]: check for check in result["validation"]["checks"]}
    assert checks["python"]["passed"] and checks["import:jupyterlab"]["passed"] and checks["home"]["passed"]
    assert "uid 0" not in checks["home"]["message"], "validated as root, not an arbitrary UID"
    assert {entry["name"] for entry in result["software"]} >= {"Python", "JupyterLab"}
    assert any(entry["name"] == "jupyterlab" and entry["visible"] for entry in result["python_dependencies"])

    stream = importer.stream("team-notebook")
    assert stream["metadata"]["labels"][NOTEBOOK_LABEL] == "true"
    annotations = _annotations(stream)
    assert annotations["opendatahub.io/notebook-image-name"] == "Team notebook"
    assert annotations["opendatahub.io/notebook-image-desc"] == "JupyterLab for the team"
    assert annotations["opendatahub.io/notebook-image-creator"] == "tests"
    assert annotations["opendatahub.io/notebook-image-order"] == "5"
    assert annotations[PHASE] == "Succeeded" and annotations[MESSAGES] == ""
    tag = _tag(stream)
    assert tag["from"] == {"kind": "DockerImage", "name": image["reference"]}
    assert tag["annotations"]["openshift.io/imported-from"] == image["reference"]
    software = json.loads(tag["annotations"]["opendatahub.io/notebook-software"])
    assert all(set(entry) == {"name", "version"} for entry in software)
    dependencies = json.loads(tag["annotations"]["opendatahub.io/notebook-python-dependencies"])
    assert all(set(entry) == {"name", "version", "visible"} for entry in dependencies)
    assert importer.pods() == [], "the validation pod is deleted afterwards"

    version = stream["metadata"]["resourceVersion"]
    again, created = importer.pods_created_during(
        lambda: importer.run(name="team-notebook", from_image=image["reference"], display_name="Team notebook",
                             description="JupyterLab for the team", creator="tests", order=5))
    assert not again.get("failed"), again.get("msg")
    assert again["changed"] is False
    assert again["validation"]["reused"] is True and again["phase"] == "Succeeded"
    assert again["digest"] == image["digest"] and again["software"] == result["software"]
    assert created == [], "a re-run with an unchanged digest starts no pod"
    assert importer.stream("team-notebook")["metadata"]["resourceVersion"] == version, "a re-run writes nothing"


def test_check_mode_and_diff(importer: Importer, test_images: dict) -> None:
    reference = test_images["notebook"]["reference"]
    planned = importer.run(check=True, diff=True, name="planned", from_image=reference)
    assert not planned.get("failed"), planned.get("msg")
    assert planned["changed"] is True and planned["phase"] == "Importing"
    assert planned["diff"]["before"] == {}
    assert planned["diff"]["after"]["metadata"]["labels"][NOTEBOOK_LABEL] == "false"
    assert importer.stream("planned") is None, "check mode created nothing"

    assert not importer.run(name="planned", from_image=reference, display_name="First").get("failed")
    version = importer.stream("planned")["metadata"]["resourceVersion"]
    unchanged = importer.run(check=True, name="planned", from_image=reference, display_name="First")
    assert unchanged["changed"] is False

    renamed = importer.run(check=True, diff=True, name="planned", from_image=reference, display_name="Second")
    assert renamed["changed"] is True
    before = renamed["diff"]["before"]["metadata"]["annotations"]["opendatahub.io/notebook-image-name"]
    after = renamed["diff"]["after"]["metadata"]["annotations"]["opendatahub.io/notebook-image-name"]
    assert (before, after) == ("First", "Second")
    assert importer.stream("planned")["metadata"]["resourceVersion"] == version, "check mode wrote nothing"

    applied = importer.run(diff=True, name="planned", from_image=reference, display_name="Second")
    assert applied["changed"] is True and applied["validation"]["reused"] is True, "a new name is no new validation"
    assert _annotations(importer.stream("planned"))["opendatahub.io/notebook-image-name"] == "Second"


@pytest.mark.parametrize("image_name, failed_check, expected_text", [
    ("no-python", "python", "no python3 or python on PATH"),
    ("python-only", "import:jupyterlab", "jupyterlab"),
])
def test_images_that_are_no_notebook_images_fail_validation(importer: Importer, test_images: dict, image_name: str,
                                                            failed_check: str, expected_text: str) -> None:
    reference = test_images[image_name]["reference"]
    result = importer.run(name="candidate", from_image=reference)
    assert result.get("failed") is True
    assert (result["reason"], result["temporary"]) == ("ValidationFailed", False)
    assert result["phase"] == "Failed" and result["changed"] is True
    failed = [check["name"] for check in result["validation"]["checks"] if not check["passed"]]
    assert failed_check in failed
    assert any(expected_text in message["message"] and message["severity"] == "error" for message in result["messages"])
    stream = importer.stream("candidate")
    assert stream["metadata"]["labels"][NOTEBOOK_LABEL] == "false"
    assert _annotations(stream)[PHASE] == "Failed"
    assert expected_text in _annotations(stream)[MESSAGES]
    assert importer.pods() == []

    again, created = importer.pods_created_during(lambda: importer.run(name="candidate", from_image=reference))
    assert (again["reason"], again["changed"]) == ("ValidationFailed", False)
    assert again["validation"]["reused"] is True
    assert created == [], "the recorded verdict for this digest is reused"


def test_missing_image(importer: Importer, test_images: dict) -> None:
    reference = test_images["notebook"]["reference"].replace("/notebook:", "/does-not-exist:")
    result = importer.run(name="missing", from_image=reference, wait_timeout=120)
    assert (result["reason"], result["temporary"]) == ("ImageNotFound", False)
    assert result["digest"] is None and result["phase"] == "Failed"
    stream = importer.stream("missing")
    assert _annotations(stream)[PHASE] == "Failed" and stream["metadata"]["labels"][NOTEBOOK_LABEL] == "false"
    assert "does not exist" in _annotations(stream)[MESSAGES]


def test_unreachable_registry(importer: Importer) -> None:
    result = importer.run(name="unreachable", from_image="127.0.0.1:9/team/notebook:1", wait_timeout=120)
    assert (result["reason"], result["temporary"]) == ("RegistryUnreachable", True)


def test_private_image_without_with_and_with_a_wrong_secret(importer: Importer, test_images: dict) -> None:
    host, username, password = test_images["private-credentials"]
    reference = test_images["private-notebook"]["reference"]

    anonymous = importer.run(name="private", from_image=reference)
    assert (anonymous["reason"], anonymous["temporary"]) == ("AuthenticationFailed", False)

    missing = importer.run(name="private", from_image=reference, image_pull_secret="registry-creds")
    assert (missing["reason"], missing["temporary"]) == ("RequiredSecretMissing", True)
    assert "registry-creds" in missing["msg"]

    importer.pull_secret("registry-creds", host, username, "not-" + password)
    wrong = importer.run(name="private", from_image=reference, image_pull_secret="registry-creds")
    assert (wrong["reason"], wrong["temporary"]) == ("AuthenticationFailed", False)

    importer.pull_secret("registry-creds", host, username, password)
    good = importer.run(name="private", from_image=reference, image_pull_secret="registry-creds")
    assert not good.get("failed"), good.get("msg")
    assert good["phase"] == "Succeeded" and good["digest"] == test_images["private-notebook"]["digest"]
    assert good["validation"]["passed"] is True, "the validation pod pulled the image with the pull secret"
    assert importer.stream("private")["metadata"]["labels"][NOTEBOOK_LABEL] == "true"
    for run in (anonymous, missing, wrong, good):
        assert password not in run["_stdout"]


def test_an_import_that_hangs_times_out(importer: Importer, test_images: dict) -> None:
    # The simulator never imports an ImageStream carrying this scenario annotation; the module keeps others' keys.
    importer.objects.create_namespaced_custom_object(IMAGE_GROUP, IMAGE_VERSION, importer.namespace, "imagestreams", {
        "apiVersion": "image.openshift.io/v1", "kind": "ImageStream",
        "metadata": {"name": "stuck", "annotations": {SCENARIO_ANNOTATION: "hang"}}, "spec": {}})
    result = importer.run(name="stuck", from_image=test_images["notebook"]["reference"], wait_timeout=4)
    assert (result["reason"], result["temporary"]) == ("Timeout", True)
    assert "4 s" in result["msg"]
    stream = importer.stream("stuck")
    assert _annotations(stream)[SCENARIO_ANNOTATION] == "hang"
    assert _annotations(stream)[PHASE] == "Failed"


def test_state_absent(importer: Importer, test_images: dict) -> None:
    reference = test_images["notebook"]["reference"]
    assert not importer.run(name="doomed", from_image=reference, validate={"enabled": False}).get("failed")
    assert importer.stream("doomed") is not None
    planned = importer.run(check=True, name="doomed", state="absent")
    assert planned["changed"] is True and importer.stream("doomed") is not None
    removed = importer.run(name="doomed", state="absent")
    assert removed["changed"] is True and importer.stream("doomed") is None
    again = importer.run(name="doomed", state="absent")
    assert again["changed"] is False and not again.get("failed")

    importer.objects.create_namespaced_custom_object(IMAGE_GROUP, IMAGE_VERSION, importer.namespace, "imagestreams", {
        "apiVersion": "image.openshift.io/v1", "kind": "ImageStream", "metadata": {"name": "not-ours"}, "spec": {}})
    refused = importer.run(name="not-ours", state="absent")
    assert refused.get("failed") and importer.stream("not-ours") is not None


def test_a_changed_source_updates_the_same_imagestream(importer: Importer, test_images: dict) -> None:
    first, second = test_images["notebook"], test_images["python-only"]
    assert not importer.run(name="moving", from_image=first["reference"], tag="stable",
                            validate={"enabled": False}).get("failed")
    moved = importer.run(name="moving", from_image=second["reference"], tag="stable", validate={"enabled": False})
    assert not moved.get("failed"), moved.get("msg")
    assert moved["changed"] is True and moved["digest"] == second["digest"]
    stream = importer.stream("moving")
    tag = _tag(stream)
    assert tag["name"] == "stable" and tag["from"]["name"] == second["reference"]
    assert tag["annotations"]["openshift.io/imported-from"] == second["reference"]
    assert _annotations(stream)["mlops.notebooks/validated-digest"] == second["digest"]
    written = importer.run(name="moving", from_image=second["reference"], tag="stable", validate={"enabled": False},
                           wait=False)
    assert written["changed"] is False


def test_validation_disabled_publishes_with_a_warning(importer: Importer, test_images: dict) -> None:
    result, created = importer.pods_created_during(lambda: importer.run(
        name="unchecked", from_image=test_images["python-only"]["reference"], validate={"enabled": False}))
    assert not result.get("failed"), result.get("msg")
    assert result["phase"] == "Succeeded" and result["validation"]["skipped"] is True
    assert result["messages"][0]["severity"] == "warning"
    assert created == []


# ------------------------------------------------------------------------ the validation pod on its own


def _pods_service(importer: Importer) -> Any:
    from ansible_collections.kubernetes.core.plugins.module_utils.k8s.client import get_api_client
    from ansible_collections.kubernetes.core.plugins.module_utils.k8s.service import K8sService

    return K8sService(get_api_client(kubeconfig=str(importer.kubeconfig)), None)


@pytest.mark.parametrize("scenario, reason", [("image-pull-error", "ImagePullFailed"), ("hang", "Timeout")])
def test_validation_pod_fails_fast_or_times_out_and_is_deleted(importer: Importer, test_images: dict, scenario: str,
                                                               reason: str) -> None:
    from ansible_collections.mlops.notebooks.plugins.module_utils.cluster.errors import ClusterError
    from ansible_collections.mlops.notebooks.plugins.module_utils.cluster.validation_pod import (
        PodSettings, ValidationPods, render_pod)
    from ansible_collections.mlops.notebooks.plugins.module_utils.cluster.waits import Deadline

    image = test_images["notebook"]["reference"]
    # A pull error must end the wait long before this deadline; a hanging pod must end at the short one.
    deadline_seconds = 300 if scenario == "image-pull-error" else 5
    manifest = render_pod(f"scenario-{uuid.uuid4().hex[:6]}", image, ["/bin/sh", "-c", "true"],
                          PodSettings(deadline_seconds=600, annotations={SCENARIO_ANNOTATION: scenario}))
    with pytest.raises(ClusterError) as caught:
        ValidationPods(_pods_service(importer), importer.namespace).run(manifest, image, Deadline(deadline_seconds))
    assert caught.value.reason == reason
    assert importer.pods() == [], "the pod is deleted whatever happened"


# ------------------------------------------------------------------------ the local backend (skopeo, buildah)


def test_local_backend_validates_and_copies_once(importer: Importer, test_images: dict) -> None:
    image = test_images["notebook"]
    target = image["reference"].replace("/testimages/notebook:", f"/copies/notebook-{uuid.uuid4().hex[:6]}:")
    first = importer.run(backend="local", from_image=image["reference"], target_image=target)
    assert not first.get("failed"), first.get("msg")
    assert first["backend"] == "local" and first["imagestream"] is None
    assert first["phase"] == "Succeeded" and first["digest"] == image["digest"]
    assert first["validation"]["passed"] is True
    assert first["changed"] is True and first["target"]["copied"] is True
    assert first["target"]["digest"] == image["digest"]
    again = importer.run(backend="local", from_image=image["reference"], target_image=target)
    assert (again["changed"], again["target"]["copied"]) == (False, False)


def test_local_backend_rejects_an_image_without_python(importer: Importer, test_images: dict) -> None:
    result = importer.run(backend="local", from_image=test_images["no-python"]["reference"])
    assert (result["reason"], result["temporary"], result["phase"]) == ("ValidationFailed", False, "Failed")
    assert any("Python" in message["message"] for message in result["messages"])


def test_local_backend_uses_the_pull_secret_file(importer: Importer, test_images: dict, tmp_path: Path) -> None:
    host, username, password = test_images["private-credentials"]
    reference = test_images["private-notebook"]["reference"]
    anonymous = importer.run(backend="local", from_image=reference, validate={"enabled": False})
    assert anonymous["reason"] == "AuthenticationFailed"
    secret_file = tmp_path / "pull-secret.json"
    secret_file.write_text(json.dumps({"auths": {host: {"auth": base64.b64encode(f"{username}:{password}".encode()).decode()}}}))
    found = importer.run(backend="local", from_image=reference, pull_secret_file=str(secret_file),
                         validate={"enabled": False})
    assert not found.get("failed"), found.get("msg")
    assert found["digest"] == test_images["private-notebook"]["digest"]
    assert password not in found["_stdout"]
