# -*- coding: utf-8 -*-
# Copyright: mlops.notebooks contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Import conditions and pull errors become distinct reasons, each temporary or not."""

from __future__ import annotations

import pytest

from ansible_collections.mlops.notebooks.plugins.module_utils.cluster import errors

IMAGE = "registry.example.com/team/notebook:1"


@pytest.mark.parametrize("reason, message, expected, temporary", [
    ("NotFound", 'dockerimage.image.openshift.io "x" not found', "ImageNotFound", False),
    ("Unauthorized", 'you may not have access to the container image "x"', "AuthenticationFailed", False),
    ("InternalError", 'Internal error occurred: Get "https://r:1/v2/": dial tcp 127.0.0.1:1: connect: connection refused',
     "RegistryUnreachable", True),
    ("InternalError", 'Internal error occurred: Get "https://r/v2/": http: server gave HTTP response to HTTPS client',
     "RegistryUnreachable", False),
    ("InternalError", "Internal error occurred: simulated import failure", "ImportFailed", True),
    ("Invalid", "something nobody knows", "ImportFailed", False),
])
def test_import_conditions(reason: str, message: str, expected: str, temporary: bool) -> None:
    error = errors.classify_import_condition(reason, message, IMAGE)
    assert (error.reason, error.temporary) == (expected, temporary)
    assert IMAGE in error.message


@pytest.mark.parametrize("waiting, message, expected", [
    ("ErrImagePull", "pulling image: unauthorized: authentication required", "AuthenticationFailed"),
    ("ImagePullBackOff", "Back-off pulling image: manifest unknown", "ImageNotFound"),
    ("ErrImagePull", "dial tcp: lookup nowhere.invalid: no such host", "RegistryUnreachable"),
    ("ErrImagePull", "simulated pull failure", "ImagePullFailed"),
    ("InvalidImageName", "couldn't parse image reference", "InvalidImageReference"),
])
def test_pull_failures(waiting: str, message: str, expected: str) -> None:
    assert errors.classify_pull_failure(waiting, message, IMAGE).reason == expected


def test_reasons_know_whether_they_are_temporary() -> None:
    assert errors.ClusterError("RequiredSecretMissing", "x").temporary is True
    assert errors.ClusterError("ValidationFailed", "x").temporary is False
    assert errors.ClusterError("Timeout", "x").temporary is True
    assert errors.ClusterError("Timeout", "x", temporary=False).temporary is False


class FakeApiException(Exception):
    def __init__(self, status: int, body: str) -> None:
        super().__init__(body)
        self.status = status
        self.body = body


def test_api_errors_carry_the_status_message() -> None:
    error = errors.api_error("creating ImageStream ns/x", FakeApiException(
        403, '{"kind":"Status","message":"imagestreams is forbidden: User \\"u\\" cannot create"}'))
    assert error.reason == "Forbidden" and not error.temporary
    assert "cannot create" in error.message and "creating ImageStream ns/x" in error.message
    assert errors.api_error("x", FakeApiException(503, "unavailable")).temporary is True
