# -*- coding: utf-8 -*-
# Copyright: mlops.notebooks contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""nbimage_import's options become a checked request; the recorded validation survives a round trip."""

from __future__ import annotations

from typing import Any

import pytest

from ansible_collections.mlops.notebooks.plugins.module_utils.cluster.errors import ClusterError
from ansible_collections.mlops.notebooks.plugins.module_utils.cluster.image_import import OpenShiftImport, RecordedValidation
from ansible_collections.mlops.notebooks.plugins.module_utils.images import checks, odh
from ansible_collections.mlops.notebooks.plugins.module_utils.nbimage_import_args import request_from_params

DIGEST = "sha256:" + "c" * 64


def params(**overrides: Any) -> dict[str, Any]:
    base = {"name": None, "namespace": "ns", "from_image": "registry.example.com:5000/a/b/notebook:2024.1",
            "tag": None, "image_pull_secret": None, "pull_secret_file": None, "display_name": None,
            "description": "", "creator": "", "order": 100, "visible": True,
            "validate": {"enabled": True, "min_python": "3.8", "required_modules": ["jupyterlab"],
                         "required_commands": [], "check_home": True, "timeout": 300},
            "reference_policy": "Source", "scheduled": False, "insecure": False, "state": "present", "wait": True,
            "wait_timeout": 300, "backend": "auto", "target_image": None}
    base.update(overrides)
    return base


def test_defaults_from_the_image() -> None:
    request = request_from_params(params())
    assert request.name == "custom-notebook"
    assert request.tag == "2024.1"
    assert request.source == "registry.example.com:5000/a/b/notebook:2024.1"
    assert request.check_settings.required_modules == ("jupyterlab",)


def test_invalid_reference_and_settings_are_option_errors() -> None:
    with pytest.raises(ClusterError) as caught:
        request_from_params(params(from_image="Registry.example.com/UPPER/case"))
    assert caught.value.reason == "InvalidImageReference"
    with pytest.raises(ClusterError) as caught:
        request_from_params(params(validate={"min_python": "three"}))
    assert caught.value.reason == "InvalidOptions" and "min_python" in caught.value.message


def test_absent_by_name_needs_no_image() -> None:
    request = request_from_params(params(from_image=None, name="gone", state="absent"))
    assert request.name == "gone"


def test_the_validation_key_follows_the_settings_only() -> None:
    base = request_from_params(params())
    same = request_from_params(params(display_name="Other", order=3))
    stricter = request_from_params(params(validate={"min_python": "3.11", "required_modules": ["jupyterlab"]}))
    assert base.validation_key() == same.validation_key()
    assert base.validation_key() != stricter.validation_key()
    assert request_from_params(params(validate={"enabled": False})).validation_key() == "disabled"


def test_a_recorded_validation_round_trips_through_the_annotations() -> None:
    request = request_from_params(params())
    report = checks.CheckReport(
        passed=False, python_version="3.11.2",
        checks=[{"name": "python", "passed": True, "message": "Python 3.11.2", "required": True},
                {"name": "import:jupyterlab", "passed": False, "message": "no jupyterlab", "required": True}],
        software=[{"name": "Python", "version": "3.11.2"}], packages=[{"name": "pandas", "version": "2.2.0"}],
        packages_complete=True)
    runner = OpenShiftImport(service=None, request=request)
    stream = runner.render(odh.PHASE_FAILED, messages=checks.report_messages(report), report=report, digest=DIGEST,
                           key=request.validation_key())
    recorded = RecordedValidation.from_stream(stream, request.tag)
    assert recorded.matches(DIGEST, request.validation_key())
    assert not recorded.matches("sha256:" + "d" * 64, request.validation_key())
    assert [check["name"] for check in recorded.report.checks] == ["python", "import:jupyterlab"]
    assert recorded.report.passed is False
    assert recorded.report.software == [{"name": "Python", "version": "3.11.2"}]
    assert recorded.report.packages == [{"name": "pandas", "version": "2.2.0"}]
    assert stream["metadata"]["labels"][odh.LABEL_NOTEBOOK_IMAGE] == "false"


def test_nothing_recorded_before_a_validation() -> None:
    request = request_from_params(params())
    stream = OpenShiftImport(service=None, request=request).render(odh.PHASE_IMPORTING)
    assert RecordedValidation.from_stream(stream, request.tag).report is None
