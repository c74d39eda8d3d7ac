# -*- coding: utf-8 -*-
# Copyright: mlops.notebooks contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A short-lived pod that runs the image checks inside the imported image and hands back its verdict.

The pod passes the ``restricted`` Pod Security level (non-root, no privilege escalation, every capability
dropped, seccomp RuntimeDefault) and leaves the UID to the platform, so it runs under an arbitrary UID as
OpenShift's restricted SCC does. The checks write their JSON report to the termination message, which the
kubelet keeps in the pod status: no log scraping. ``activeDeadlineSeconds`` bounds the pod on the node, the
caller's deadline bounds the wait, and the pod is deleted whatever happened. Credentials reach the node only as
``imagePullSecrets`` (by name), never in the command or the environment.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from .errors import ClusterError, api_error, classify_pull_failure
from .waits import Deadline, poll

CONTAINER_NAME = "validate"
SCRATCH_VOLUME = "scratch"
SCRATCH_MOUNT = "/tmp"
TERMINATION_MESSAGE_PATH = "/dev/termination-log"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY = "mlops.notebooks"
COMPONENT_LABEL = "app.kubernetes.io/component"
COMPONENT = "image-validation"
IMAGESTREAM_LABEL = "mlops.notebooks/imagestream"
# Waiting reasons after which the container will never start by itself.
FAIL_FAST_WAITING = ("ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull",
                     "CreateContainerConfigError", "CreateContainerError", "RunContainerError")
LOG_EXCERPT_LINES = 20


@dataclass(frozen=True)
class PodSettings:
    """How the validation pod runs; ``deadline_seconds`` becomes ``activeDeadlineSeconds``."""

    deadline_seconds: int = 300
    pull_secret: Optional[str] = None
    service_account: Optional[str] = None
    run_as_user: Optional[int] = None
    cpu_request: str = "100m"
    memory_request: str = "256Mi"
    memory_limit: str = "1Gi"
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class PodOutcome:
    """The validation container's end: exit code, termination message, and a log excerpt when it had no message."""

    exit_code: int
    termination_message: str
    reason: str = ""
    log_excerpt: str = ""
    pod_name: str = ""
    log: str = ""


def selector_labels(stream_name: str) -> dict[str, str]:
    """Labels every validation pod of an ImageStream carries (state: absent finds leftovers by them)."""
    return {MANAGED_BY_LABEL: MANAGED_BY, COMPONENT_LABEL: COMPONENT, IMAGESTREAM_LABEL: stream_name[:63]}


def render_pod(stream_name: str, image: str, command: list[str], settings: PodSettings) -> dict[str, Any]:
    """The Pod manifest (no namespace: the caller's)."""
    container_security: dict[str, Any] = {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "runAsNonRoot": True,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    pod_security: dict[str, Any] = {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}
    if settings.run_as_user is not None:
        pod_security["runAsUser"] = settings.run_as_user
    spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "activeDeadlineSeconds": int(settings.deadline_seconds),
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": 5,
        "securityContext": pod_security,
        "containers": [{
            "name": CONTAINER_NAME,
            "image": image,
            "imagePullPolicy": "IfNotPresent",
            "command": list(command),
            # The image's own HOME is what the checks examine; scratch space for Python and pip is an emptyDir.
            "env": [{"name": "TMPDIR", "value": SCRATCH_MOUNT}, {"name": "PIP_DISABLE_PIP_VERSION_CHECK", "value": "1"},
                    {"name": "PYTHONDONTWRITEBYTECODE", "value": "1"}],
            "securityContext": container_security,
            "terminationMessagePath": TERMINATION_MESSAGE_PATH,
            "terminationMessagePolicy": "File",
            "resources": {"requests": {"cpu": settings.cpu_request, "memory": settings.memory_request},
                          "limits": {"memory": settings.memory_limit}},
            "volumeMounts": [{"name": SCRATCH_VOLUME, "mountPath": SCRATCH_MOUNT}],
        }],
        "volumes": [{"name": SCRATCH_VOLUME, "emptyDir": {"sizeLimit": "256Mi"}}],
    }
    if settings.pull_secret:
        spec["imagePullSecrets"] = [{"name": settings.pull_secret}]
    if settings.service_account:
        spec["serviceAccountName"] = settings.service_account
    prefix = stream_name[:40].rstrip("-.") + "-validate-"
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "generateName": prefix,
            "labels": {**selector_labels(stream_name), **settings.labels},
            "annotations": dict(settings.annotations),
        },
        "spec": spec,
    }


def _container_status(pod: dict[str, Any]) -> dict[str, Any]:
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        if status.get("name") == CONTAINER_NAME:
            return status
    return {}


def describe(pod: dict[str, Any]) -> str:
    """One line about where a pod is: phase, reason, scheduling and container state."""
    status = pod.get("status") or {}
    parts = [str(status.get("phase") or "Pending")]
    if status.get("reason"):
        parts.append(str(status["reason"]))
    for condition in status.get("conditions") or []:
        if condition.get("type") == "PodScheduled" and condition.get("status") == "False":
            parts.append(f"not scheduled: {condition.get('reason', '')} {condition.get('message', '')}".strip())
    state = _container_status(pod).get("state") or {}
    for name, detail in state.items():
        if isinstance(detail, dict):
            reason = detail.get("reason") or ""
            parts.append(f"container {name}{': ' + reason if reason else ''}")
    return ", ".join(parts)


def progress(pod: dict[str, Any], image: str) -> Optional[PodOutcome]:
    """The outcome once the validation container ended; None while it has not; raises when it never will."""
    status = pod.get("status") or {}
    container = _container_status(pod)
    state = container.get("state") or {}
    terminated = state.get("terminated")
    if isinstance(terminated, dict):
        return PodOutcome(exit_code=int(terminated.get("exitCode") or 0),
                          termination_message=str(terminated.get("message") or ""),
                          reason=str(terminated.get("reason") or ""),
                          pod_name=str((pod.get("metadata") or {}).get("name") or ""))
    waiting = state.get("waiting")
    if isinstance(waiting, dict) and waiting.get("reason") in FAIL_FAST_WAITING:
        reason, message = str(waiting.get("reason")), str(waiting.get("message") or "")
        if reason.startswith("Create") or reason == "RunContainerError":
            raise ClusterError("ValidationPodFailed", f"the validation container could not be started: {reason}: {message}",
                               temporary=reason == "CreateContainerConfigError")
        raise classify_pull_failure(reason, message, image)
    if status.get("phase") == "Failed":
        if status.get("reason") == "DeadlineExceeded":
            raise ClusterError("Timeout", f"the validation pod ran into its deadline (activeDeadlineSeconds): "
                                          f"{status.get('message') or describe(pod)}")
        raise ClusterError("ValidationPodFailed", f"the validation pod failed before its container ran: {describe(pod)} "
                                                  f"{status.get('message') or ''}".strip())
    if status.get("phase") == "Succeeded":  # container status lost (node gone): no verdict to read
        raise ClusterError("ValidationPodFailed", f"the validation pod ended without a container status: {describe(pod)}")
    return None


class ValidationPods:
    """Creates one validation pod, waits for its verdict, and always deletes it."""

    def __init__(self, service: Any, namespace: str) -> None:
        self.service = service
        self.namespace = namespace
        self._resource: Any = None

    @property
    def resource(self) -> Any:
        if self._resource is None:
            self._resource = self.service.find_resource("Pod", "v1", fail=True)
        return self._resource

    def run(self, manifest: dict[str, Any], image: str, deadline: Deadline,
            want_log: Optional[Callable[[PodOutcome], bool]] = None) -> PodOutcome:
        """Create the pod, wait for its container to end (or fail fast), and delete it. The whole log is fetched
        when ``want_log(outcome)`` says so, the last lines when the container left no termination message."""
        try:
            created = self.service.client.create(self.resource, manifest, namespace=self.namespace).to_dict()
        except Exception as error:
            raise api_error(f"creating the validation pod in namespace {self.namespace}", error) from error
        name = created["metadata"]["name"]
        try:
            last: dict[str, Any] = {"pod": created}

            def probe() -> Optional[PodOutcome]:
                pod = self._get(name)
                if pod is None:
                    raise ClusterError("ValidationPodFailed", f"the validation pod {self.namespace}/{name} was deleted "
                                                              f"by someone else before it finished")
                last["pod"] = pod
                return progress(pod, image)

            outcome = poll(probe, deadline, first_interval=0.5, max_interval=2.0)
            if outcome is None:
                raise ClusterError("Timeout", f"the validation pod {self.namespace}/{name} did not finish within "
                                              f"{deadline.seconds:g} s ({describe(last['pod'])})")
            log = self.read_log(name) if want_log is not None and want_log(outcome) else ""
            excerpt = ""
            if not outcome.termination_message.strip():
                excerpt = "\n".join(log.splitlines()[-LOG_EXCERPT_LINES:]) if log else self.read_log(name, LOG_EXCERPT_LINES)
            return PodOutcome(outcome.exit_code, outcome.termination_message, outcome.reason, excerpt, name, log)
        finally:
            self.delete(name)

    def _get(self, name: str) -> Optional[dict[str, Any]]:
        from kubernetes.dynamic.exceptions import NotFoundError

        try:
            return self.service.client.get(self.resource, name=name, namespace=self.namespace).to_dict()
        except NotFoundError:
            return None
        except Exception as error:
            raise api_error(f"reading the validation pod {self.namespace}/{name}", error) from error

    def read_log(self, name: str, tail_lines: Optional[int] = None) -> str:
        """The container's log (its last ``tail_lines``), or '' when it cannot be read: the termination message
        stays the primary source, a missing log must not hide it."""
        from kubernetes import client as kubernetes_client

        try:
            core = kubernetes_client.CoreV1Api(self.service.client.client.client)
            options: dict[str, Any] = {"container": CONTAINER_NAME}
            if tail_lines:
                options["tail_lines"] = tail_lines
            text = core.read_namespaced_pod_log(name, self.namespace, **options)
        except Exception:  # a missing log must not hide the real failure
            return ""
        if isinstance(text, bytes):
            text = text.decode("utf-8", "replace")
        return str(text or "").strip()

    def delete(self, name: str) -> None:
        from kubernetes.dynamic.exceptions import NotFoundError

        try:
            self.service.client.delete(self.resource, name=name, namespace=self.namespace,
                                       body={"gracePeriodSeconds": 0, "propagationPolicy": "Background"})
        except NotFoundError:
            return
        except Exception as error:
            raise api_error(f"deleting the validation pod {self.namespace}/{name}", error) from error

    def delete_leftovers(self, stream_name: str, dry_run: bool = False) -> list[str]:
        """Delete validation pods of ``stream_name`` left by an interrupted run; the names deleted (or that would be)."""
        selector = ",".join(f"{key}={value}" for key, value in selector_labels(stream_name).items())
        try:
            listing = self.service.client.get(self.resource, namespace=self.namespace, label_selector=selector).to_dict()
        except Exception as error:
            raise api_error(f"listing validation pods in namespace {self.namespace}", error) from error
        names = [item["metadata"]["name"] for item in listing.get("items") or []]
        if not dry_run:
            for name in names:
                self.delete(name)
        return names
