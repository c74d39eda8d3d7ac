"""Failure reasons from registry messages (as skopeo, buildah and ImageStream imports print them)."""

from __future__ import annotations

import pytest

from ansible_collections.mlops.notebooks.plugins.module_utils.images import errors
from ansible_collections.mlops.notebooks.plugins.module_utils.images.checks import failed_report

# Real stderr lines of skopeo 1.9 and buildah 1.28 against the local test registries.
SKOPEO_NOT_FOUND = (
    'time="2026-11-21T18:44:37Z" level=fatal msg="Error parsing image name \\"docker://127.0.0.1:44499/testimages/'
    'nothing:latest\\": reading manifest latest in 127.0.0.1:44499/testimages/nothing: manifest unknown: manifest '
    'unknown"')
SKOPEO_UNAUTHORIZED = (
    'time="2026-11-21T18:44:37Z" level=fatal msg="Error parsing image name \\"docker://127.0.0.1:56495/testimages/'
    'notebook:latest\\": reading manifest latest in 127.0.0.1:56495/testimages/notebook: unauthorized: '
    'authentication required"')
BUILDAH_REFUSED = (
    'time="2026-11-21T18:44:41Z" level=warning msg="Failed, retrying in 2s ... (1/3). Error: initializing source '
    'docker://127.0.0.1:1/x/y:latest: pinging container registry 127.0.0.1:1: Get \\"http://127.0.0.1:1/v2/\\": dial '
    'tcp 127.0.0.1:1: connect: connection refused"\n'
    'Error: initializing source docker://127.0.0.1:1/x/y:latest: pinging container registry 127.0.0.1:1: Get '
    '"http://127.0.0.1:1/v2/": dial tcp 127.0.0.1:1: connect: connection refused\n')
SKOPEO_HTTP_REGISTRY = (
    'time="2026-11-21T18:44:38Z" level=fatal msg="Error parsing image name \\"docker://127.0.0.1:44499/testimages/'
    'notebook:latest\\": pinging container registry 127.0.0.1:44499: Get \\"https://127.0.0.1:44499/v2/\\": http: '
    'server gave HTTP response to HTTPS client"')
SKOPEO_NO_SUCH_HOST = (
    'time="2026-11-21T18:44:38Z" level=fatal msg="Error parsing image name \\"docker://nonexistent.invalid/x/y:'
    'latest\\": pinging container registry nonexistent.invalid: Get \\"https://nonexistent.invalid/v2/\\": dial tcp: '
    'lookup nonexistent.invalid on 10.255.255.53:53: no such host"')


def test_tool_message_keeps_the_last_error_without_wrappers():
    assert errors.tool_message(SKOPEO_NOT_FOUND) == (
        "reading manifest latest in 127.0.0.1:44499/testimages/nothing: manifest unknown: manifest unknown")
    assert errors.tool_message(BUILDAH_REFUSED) == (
        'pinging container registry 127.0.0.1:1: Get "http://127.0.0.1:1/v2/": dial tcp 127.0.0.1:1: connect: '
        "connection refused")
    assert errors.tool_message("") == ""


@pytest.mark.parametrize("stderr, reason, temporary", [
    (SKOPEO_NOT_FOUND, errors.IMAGE_NOT_FOUND, False),
    (SKOPEO_UNAUTHORIZED, errors.AUTHENTICATION_FAILED, False),
    (BUILDAH_REFUSED, errors.REGISTRY_UNREACHABLE, True),
    (SKOPEO_NO_SUCH_HOST, errors.REGISTRY_UNREACHABLE, True),
    (SKOPEO_HTTP_REGISTRY, errors.REGISTRY_UNREACHABLE, False),
    # Messages as OpenShift's image import writes them into ImageStream status conditions.
    ("Internal error occurred: quay.io/org/x:1: manifest unknown", errors.IMAGE_NOT_FOUND, False),
    ("you may not have access to the container image \"quay.io/org/x:1\": unauthorized: access to the requested "
     "resource is not authorized", errors.AUTHENTICATION_FAILED, False),
    ("Get \"https://quay.io/v2/\": net/http: TLS handshake timeout", errors.REGISTRY_UNREACHABLE, True),
    ("received unexpected HTTP status: 503 Service Unavailable", errors.REGISTRY_UNREACHABLE, True),
    ("toomanyrequests: You have reached your pull rate limit", errors.REGISTRY_UNREACHABLE, True),
    ("context deadline exceeded", errors.TIMEOUT, True),
])
def test_classify_registry_messages(stderr, reason, temporary):
    assert errors.classify_registry_message(errors.tool_message(stderr)) == (reason, temporary)
    error = errors.registry_error("quay.io/org/x:1", errors.tool_message(stderr))
    assert (error.reason, error.temporary) == (reason, temporary)
    assert "quay.io/org/x:1" in error.message
    assert error.to_dict() == {"reason": reason, "temporary": temporary, "message": error.message}


def test_unrecognised_messages_are_kept_as_tool_failures():
    assert errors.classify_registry_message("something odd happened") is None
    assert errors.classify_registry_message("") is None
    error = errors.registry_error("quay.io/x/y:1", "something odd happened", context="copying a to b")
    assert error.reason == errors.TOOL_FAILED
    assert error.temporary is False
    assert error.message == "copying a to b: the registry operation on quay.io/x/y:1 failed: something odd happened"


def test_temporary_defaults_follow_the_reason():
    assert errors.ImageError(errors.TIMEOUT, "x").temporary is True
    assert errors.ImageError(errors.REGISTRY_UNREACHABLE, "x").temporary is True
    for reason in (errors.IMAGE_NOT_FOUND, errors.AUTHENTICATION_FAILED, errors.VALIDATION_FAILED,
                   errors.TOOL_MISSING, errors.TOOL_FAILED):
        assert errors.ImageError(reason, "x").temporary is False


def test_validation_failed_names_each_failed_check():
    report = failed_report("python", "no python3 or python on PATH")
    error = errors.validation_failed("quay.io/x/y:1", report)
    assert error.reason == errors.VALIDATION_FAILED
    assert error.temporary is False
    assert error.report is report
    assert error.message == "image quay.io/x/y:1 is not a usable notebook image: no python3 or python on PATH"
