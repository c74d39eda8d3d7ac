# -*- coding: utf-8 -*-
# Copyright: mlops.notebooks contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The validation pod manifest (restricted Pod Security) and how its status is read."""

from __future__ import annotations

from typing import Any

import pytest

from ansible_collections.mlops.notebooks.plugins.module_utils.cluster import validation_pod
from ansible_collections.mlops.notebooks.plugins.module_utils.cluster.errors import ClusterError

IMAGE = "registry.example.com/team/notebook@sha256:" + "a" * 64


def manifest(**settings: Any) -> dict[str, Any]:
    return validation_pod.render_pod("custom-notebook", IMAGE, ["/bin/sh", "-c", "true"],
                                     validation_pod.PodSettings(**settings))


def test_restricted_pod_security() -> None:
    pod = manifest(deadline_seconds=120, pull_secret="creds")
    spec = pod["spec"]
    (container,) = spec["containers"]
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert "runAsUser" not in spec["securityContext"]  # the platform picks an arbitrary UID
    assert all(set(volume) <= {"name", "emptyDir"} for volume in spec["volumes"])
    assert spec["activeDeadlineSeconds"] == 120 and spec["restartPolicy"] == "Never"
    assert spec["imagePullSecrets"] == [{"name": "creds"}]
    assert spec["automountServiceAccountToken"] is False
    assert container["image"] == IMAGE and container["terminationMessagePolicy"] == "File"


def test_labels_find_leftovers_and_names_stay_short() -> None:
    pod = validation_pod.render_pod("x" * 80, IMAGE, ["true"], validation_pod.PodSettings())
    assert len(pod["metadata"]["generateName"]) <= 63 - 5
    assert validation_pod.selector_labels("x" * 80).items() <= pod["metadata"]["labels"].items()
    assert all(len(value) <= 63 for value in pod["metadata"]["labels"].values())


def pod(phase: str = "Pending", state: Any = None, **status: Any) -> dict[str, Any]:
    containers = [{"name": "validate", "state": state}] if state else []
    return {"metadata": {"name": "p"}, "status": {"phase": phase, "containerStatuses": containers, **status}}


def test_not_yet() -> None:
    assert validation_pod.progress(pod(), IMAGE) is None
    assert validation_pod.progress(pod("Pending", {"waiting": {"reason": "ContainerCreating"}}), IMAGE) is None
    assert validation_pod.progress(pod("Running", {"running": {}}), IMAGE) is None


def test_terminated_with_a_message() -> None:
    outcome = validation_pod.progress(pod("Failed", {"terminated": {"exitCode": 1, "message": '{"x": 1}',
                                                                    "reason": "Error"}}), IMAGE)
    assert (outcome.exit_code, outcome.termination_message) == (1, '{"x": 1}')


@pytest.mark.parametrize("waiting, reason", [
    ({"reason": "ErrImagePull", "message": "unauthorized: authentication required"}, "AuthenticationFailed"),
    ({"reason": "ImagePullBackOff", "message": "Back-off pulling image"}, "ImagePullFailed"),
    ({"reason": "CreateContainerConfigError", "message": "secret not found"}, "ValidationPodFailed"),
])
def test_fail_fast_while_waiting(waiting: dict, reason: str) -> None:
    with pytest.raises(ClusterError) as caught:
        validation_pod.progress(pod("Pending", {"waiting": waiting}), IMAGE)
    assert caught.value.reason == reason


def test_deadline_exceeded_is_a_timeout() -> None:
    with pytest.raises(ClusterError) as caught:
        validation_pod.progress(pod("Failed", reason="DeadlineExceeded", message="Pod was active too long"), IMAGE)
    assert (caught.value.reason, caught.value.temporary) == ("Timeout", True)


def test_describe_mentions_scheduling() -> None:
    text = validation_pod.describe(pod(conditions=[{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                                                    "message": "no nodes"}]))
    assert "Unschedulable" in text
