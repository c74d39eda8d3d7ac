# -*- coding: utf-8 -*-
# Copyright: mlops.notebooks contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The OpenShift backend of nbimage_import: ImageStream, import, validation pod, published result.

Steps, each writing only what differs (a re-run with the same inputs and digest writes nothing):

1. the pull secret must exist (``RequiredSecretMissing`` otherwise, before any write);
2. the ImageStream gets its tag and the ODH metadata; a new or changed source resets it to phase ``Importing``
   with the label ``"false"``; a source whose last import failed is imported again;
3. the import is awaited until the tag resolves to a digest, or stops at once on ``ImportSuccess=False``;
4. when the digest (or the validation settings) differ from the recorded validation, phase ``Validating`` and a
   validation pod; otherwise the recorded result is reused and no pod starts;
5. phase ``Succeeded`` (label ``"true"`` when visible) or ``Failed``, messages, software and dependencies.

Check mode sends every write as a server-side dry run and stops where the cluster would have to do work (import,
validation), reporting what would change.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Optional

from ..images import checks, odh
from ..nbimage_import_args import ANNOTATION_VALIDATION, ImportRequest, empty_result, validation_result
from . import imagestream as streams
from .errors import ClusterError
from .pull_secret import check_pull_secret
from .validation_pod import PodSettings, ValidationPods, render_pod
from .waits import Deadline

# Time given to the node beyond the pod's activeDeadlineSeconds (pull, start, status report).
POD_DEADLINE_GRACE_SECONDS = 20


@dataclass
class RecordedValidation:
    """The validation result an ImageStream carries from an earlier run."""

    digest: Optional[str] = None
    key: Optional[str] = None
    report: Optional[checks.CheckReport] = None

    @classmethod
    def from_stream(cls, stream: Optional[dict[str, Any]], tag_name: str) -> "RecordedValidation":
        if not stream:
            return cls()
        annotations = (stream.get("metadata") or {}).get("annotations") or {}
        try:
            recorded = json.loads(annotations.get(ANNOTATION_VALIDATION) or "{}")
        except ValueError:
            recorded = {}
        if not isinstance(recorded, dict) or not annotations.get(odh.ANNOTATION_VALIDATED_DIGEST):
            return cls()
        tag = streams.spec_tag(stream, tag_name) or {}
        tag_annotations = tag.get("annotations") or {}
        report = checks.CheckReport(
            passed=recorded.get("passed") is True,
            checks=[dict(check) for check in recorded.get("checks") or [] if isinstance(check, dict)],
            python_version=recorded.get("python_version"),
            software=odh.parse_software(tag_annotations.get(odh.TAG_ANNOTATION_SOFTWARE)),
            packages=[{"name": entry["name"], "version": entry["version"]} for entry in
                      odh.parse_dependencies(tag_annotations.get(odh.TAG_ANNOTATION_PYTHON_DEPENDENCIES))],
            packages_complete=True,
            error=recorded.get("error"),
        )
        return cls(annotations.get(odh.ANNOTATION_VALIDATED_DIGEST), recorded.get("settings"), report)

    def matches(self, digest: str, key: str) -> bool:
        return self.report is not None and self.digest == digest and self.key == key


@dataclass
class Outcome:
    """What a run did: the module's result fields, the diff, and the failure if there was one."""

    result: dict[str, Any]
    changed: bool = False
    diff: Optional[dict[str, Any]] = None
    error: Optional[ClusterError] = None
    warnings: list[str] = field(default_factory=list)


def _validation_annotation(key: str, report: Optional[checks.CheckReport]) -> str:
    if report is None:
        return odh.dumps({"settings": key, "passed": True, "checks": [], "python_version": None})
    return odh.dumps({"settings": key, "passed": report.passed, "python_version": report.python_version,
                      "error": report.error,
                      "checks": [{name: check.get(name) for name in ("name", "passed", "message", "required")}
                                 for check in report.checks]})


def _clean(stream: Optional[dict[str, Any]]) -> Optional[dict[str, Any]]:
    """The object as returned to the user: without managedFields."""
    if not stream:
        return stream
    cleaned = dict(stream)
    cleaned["metadata"] = {key: value for key, value in (stream.get("metadata") or {}).items() if key != "managedFields"}
    return cleaned


class OpenShiftImport:
    """One run of the module against a cluster that serves ImageStreams."""

    def __init__(self, service: Any, request: ImportRequest, *, check_mode: bool = False) -> None:
        if not request.namespace:
            raise ClusterError("InvalidOptions", "namespace is required with the openshift backend")
        self.service = service
        self.request = request
        self.check_mode = check_mode
        self.namespace = request.namespace
        self.streams = streams.ImageStreams(service, request.namespace)
        self.pods = ValidationPods(service, request.namespace)
        self.changed = False
        self.result = empty_result("openshift")
        self.warnings: list[str] = []
        self.before: dict[str, Any] = {}
        self.current: Optional[dict[str, Any]] = None

    # ----------------------------------------------------------------------------------- rendering

    def render(self, phase: str, *, messages: Optional[list] = None, report: Optional[checks.CheckReport] = None,
               digest: Optional[str] = None, key: Optional[str] = None) -> dict[str, Any]:
        """The desired ImageStream for ``phase``; ``digest``/``key`` record a finished validation."""
        request = self.request
        annotations: dict[str, str] = {}
        if digest is not None and key is not None:
            annotations = {odh.ANNOTATION_VALIDATED_DIGEST: digest, ANNOTATION_VALIDATION: _validation_annotation(key, report)}
        else:  # no validation on record for what the stream holds now
            annotations = {odh.ANNOTATION_VALIDATED_DIGEST: "", ANNOTATION_VALIDATION: ""}
        return odh.render_imagestream(
            request.name, self.namespace, request.source,
            tag=request.tag,
            display_name=request.display_name,
            description=request.description,
            creator=request.creator,
            order=request.order,
            phase=phase,
            messages=messages or [],
            visible=request.visible,
            software=report.software if report is not None else [],
            python_dependencies=report.packages if report is not None else [],
            scheduled=request.scheduled,
            insecure=request.insecure,
            reference_policy=request.reference_policy,
            annotations=annotations,
        )

    def render_kept(self, existing: dict[str, Any]) -> dict[str, Any]:
        """The desired stream when the source did not change: the options' metadata, with the phase, messages and
        validation record the stream already holds."""
        parsed = odh.parse_imagestream(existing)
        annotations = (existing.get("metadata") or {}).get("annotations") or {}
        phase = parsed.phase if parsed.phase in odh.PHASES else odh.PHASE_IMPORTING
        recorded = RecordedValidation.from_stream(existing, self.request.tag)
        desired = self.render(phase, messages=parsed.messages, report=recorded.report)
        desired["metadata"]["annotations"][odh.ANNOTATION_VALIDATED_DIGEST] = annotations.get(
            odh.ANNOTATION_VALIDATED_DIGEST, "")
        desired["metadata"]["annotations"][ANNOTATION_VALIDATION] = annotations.get(ANNOTATION_VALIDATION, "")
        return desired

    # ----------------------------------------------------------------------------------- writing

    def write(self, desired: dict[str, Any], *, reimport: bool = False) -> dict[str, Any]:
        """Create or merge-patch the stream to ``desired``; server-side dry run in check mode."""
        if self.current is None:
            self.changed = True
            created = self.streams.create(desired)
            self.current = created if created.get("metadata") else desired
            return self.current
        patch = streams.stream_patch(self.current, desired, self.request.tag, reimport=reimport)
        if patch is None:
            return self.current
        self.changed = True
        self.current = self.streams.patch(self.request.name, patch)
        return self.current

    def publish_failure(self, error: ClusterError, report: Optional[checks.CheckReport] = None,
                        digest: Optional[str] = None) -> None:
        """Phase Failed, label false and the error in the messages; a permanent validation verdict is recorded
        (same digest and settings: no new pod next time), a temporary failure is not."""
        messages = checks.report_messages(report) if report is not None else []
        if not messages:
            messages = [{"severity": "error", "message": error.message}]
        record = error.reason == "ValidationFailed" and digest is not None
        desired = self.render(odh.PHASE_FAILED, messages=messages, report=report,
                              digest=digest if record else None,
                              key=self.request.validation_key() if record else None)
        if not self.check_mode:
            self.write(desired)
        self.result["phase"] = odh.PHASE_FAILED
        self.result["messages"] = odh.normalize_messages(messages)

    # ----------------------------------------------------------------------------------- state: present

    def present(self) -> Outcome:
        request = self.request
        try:
            if request.pull_secret:
                self.warnings += check_pull_secret(self.service, self.namespace, request.pull_secret,
                                                   request.reference.registry)
            existing = self.streams.get(request.name)
            self.current = existing
            self._run_present(existing)
        except ClusterError as error:
            return self._finish(error)
        return self._finish(None)

    def _run_present(self, existing: Optional[dict[str, Any]]) -> None:
        request = self.request
        desired_tag = self.render(odh.PHASE_IMPORTING)["spec"]["tags"][0]
        existing_tag = streams.spec_tag(existing, request.tag)
        source_changed = existing is None or streams.reference_changed(existing_tag, desired_tag)
        state = streams.import_state(existing, request.tag) if not source_changed else streams.ImportState("Pending")
        reimport = not source_changed and state.failed
        self.before = streams.managed_view(existing, self.render(odh.PHASE_IMPORTING), request.tag)

        if source_changed or reimport:
            self.write(self.render(odh.PHASE_IMPORTING), reimport=reimport)
        else:
            self.write(self.render_kept(existing))
        if self.check_mode and (source_changed or reimport):
            self.result["phase"] = odh.PHASE_IMPORTING
            self.warnings.append("check mode: the import and the validation of the image are not run")
            return
        if not request.wait:
            self.result["phase"] = odh.parse_imagestream(self.current).phase
            return

        if not state.imported or source_changed or reimport:
            if self.check_mode:
                self.result["phase"] = odh.parse_imagestream(self.current).phase
                return
            try:
                self.current, state = self.streams.wait_for_import(request.name, request.tag, request.source,
                                                                   Deadline(request.wait_timeout))
            except ClusterError as error:
                self.publish_failure(error)
                raise
        digest = state.digest or ""
        self.result["digest"] = digest
        self.result["image"] = request.reference.by_digest(digest)

        key = request.validation_key()
        recorded = RecordedValidation.from_stream(self.current, request.tag)
        if recorded.matches(digest, key):
            self._publish_recorded(recorded, digest, key)
            return
        if self.check_mode:
            self.changed = True
            self.result["phase"] = odh.PHASE_VALIDATING if request.validate else odh.PHASE_SUCCEEDED
            if request.validate:
                self.warnings.append(f"check mode: the image {self.result['image']} would be validated in a pod")
            return
        if not request.validate:
            self._publish(odh.PHASE_SUCCEEDED, None, digest, key,
                          [{"severity": "warning", "message": "not validated (validate.enabled is false)"}])
            return
        self.write(self.render(odh.PHASE_VALIDATING))
        report = self._validate(digest)
        self.result["validation"] = validation_result(report, digest=digest)
        if not report.passed:
            error = ClusterError("ValidationFailed", "the image failed validation: " + "; ".join(
                message["message"] for message in checks.report_messages(report) if message["severity"] == "error"))
            self.result["software"] = list(report.software)
            self.result["python_dependencies"] = odh.normalize_dependencies(report.packages)
            self.publish_failure(error, report, digest)
            raise error
        self._publish(odh.PHASE_SUCCEEDED, report, digest, key, checks.report_messages(report))

    def _publish(self, phase: str, report: Optional[checks.CheckReport], digest: str, key: str,
                 messages: list) -> None:
        self.write(self.render(phase, messages=messages, report=report, digest=digest, key=key))
        self.result["phase"] = phase
        self.result["messages"] = odh.normalize_messages(messages)
        if report is not None:
            self.result["software"] = list(report.software)
            self.result["python_dependencies"] = odh.normalize_dependencies(report.packages)
        self.result["validation"] = validation_result(report, digest=digest, skipped=report is None)

    def _publish_recorded(self, recorded: RecordedValidation, digest: str, key: str) -> None:
        """The digest was validated before with these settings: reuse the verdict, start no pod."""
        report = recorded.report
        if key == "disabled":
            report = None
        parsed = odh.parse_imagestream(self.current)
        passed = report is None or report.passed
        phase = odh.PHASE_SUCCEEDED if passed else odh.PHASE_FAILED
        messages = parsed.messages if parsed.phase == phase else (
            checks.report_messages(report) if report is not None else [])
        self.write(self.render(phase, messages=messages, report=report, digest=digest, key=key))
        self.result["phase"] = phase
        self.result["messages"] = odh.normalize_messages(messages)
        if report is not None:
            self.result["software"] = list(report.software)
            self.result["python_dependencies"] = odh.normalize_dependencies(report.packages)
        self.result["validation"] = validation_result(report, digest=digest, skipped=report is None, reused=True)
        if not passed:
            raise ClusterError("ValidationFailed", "the image failed validation (recorded for this digest and these "
                                                   "settings): " + "; ".join(message["message"] for message in messages))

    def _validate(self, digest: str) -> checks.CheckReport:
        """Run the checks in a pod on the pinned image; the report, or ClusterError when no verdict came back."""
        request = self.request
        image = request.reference.by_digest(digest)
        settings = PodSettings(deadline_seconds=request.validation_timeout, pull_secret=request.pull_secret,
                               annotations={"mlops.notebooks/digest": digest})
        manifest = render_pod(request.name, image, checks.check_command(request.check_settings), settings)
        deadline = Deadline(request.validation_timeout + POD_DEADLINE_GRACE_SECONDS)
        try:
            outcome = self.pods.run(manifest, image, deadline, want_log=_needs_log)
        except ClusterError as error:
            self.publish_failure(error)
            raise
        if outcome.reason == "OOMKilled":
            error = ClusterError("ValidationPodFailed", f"the validation container ran out of memory (OOMKilled, limit "
                                                        f"{settings.memory_limit}) before it wrote a verdict")
            self.publish_failure(error)
            raise error
        report = checks.parse_check_result(outcome.log or outcome.termination_message)
        if report.error and outcome.log_excerpt:
            report.error += f" (container exit code {outcome.exit_code}; last log lines: {outcome.log_excerpt[-800:]})"
        return report

    # ----------------------------------------------------------------------------------- state: absent

    def absent(self) -> Outcome:
        request = self.request
        try:
            existing = self.streams.get(request.name)
            self.current = existing
            if existing is not None:
                labels = (existing.get("metadata") or {}).get("labels") or {}
                if labels.get(odh.LABEL_MANAGED_BY) != odh.MANAGED_BY:
                    raise ClusterError("InvalidOptions", f"ImageStream {self.namespace}/{request.name} was not created "
                                                         f"by this module (no {odh.LABEL_MANAGED_BY}={odh.MANAGED_BY} "
                                                         f"label); it is left alone")
            leftovers = self.pods.delete_leftovers(request.name, dry_run=self.check_mode)
            if leftovers:
                self.changed = True
            self.result["deleted_pods"] = leftovers
            if existing is not None:
                self.before = streams.managed_view(existing, existing, request.tag)
                if not self.check_mode:
                    self.streams.delete(request.name)
                self.changed = True
                self.current = None
        except ClusterError as error:
            return self._finish(error, absent=True)
        return self._finish(None, absent=True)

    # ----------------------------------------------------------------------------------- result

    def _finish(self, error: Optional[ClusterError], absent: bool = False) -> Outcome:
        after: dict[str, Any] = {}
        if self.current is not None and not absent:
            # the keys the module manages are the same in every phase
            after = streams.managed_view(self.current, self.render(odh.PHASE_IMPORTING), self.request.tag)
            self.result["imagestream"] = _clean(self.current)
            if self.result["phase"] is None:
                self.result["phase"] = odh.parse_imagestream(self.current).phase
        self.result["changed"] = self.changed
        return Outcome(result=self.result, changed=self.changed, diff={"before": self.before, "after": after},
                       error=error, warnings=self.warnings)


def _needs_log(outcome: Any) -> bool:
    """Fetch the whole log when the termination message is missing or left the package list out."""
    text = outcome.termination_message.strip()
    if not text:
        return True
    report = checks.parse_check_result(text)
    return report.error is not None or not report.packages_complete
