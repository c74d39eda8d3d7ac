"""The build controller: runs OpenShift Builds with buildah and reports them as OpenShift's build controller does.

A Build moves New -> Pending -> Running -> Complete | Failed | Cancelled (``status.cancelled: true`` cancels it).
Docker-strategy builds (inline ``spec.source.dockerfile``, or a git repository's Dockerfile) really run
``buildah bud`` and push to ``spec.output.to`` (a DockerImage, or an ImageStreamTag: pushed to
``<registry>/<namespace>/<stream>:<tag>`` and recorded in the stream's status). Source-strategy (S2I) builds
copy the source into the builder image and run its ``assemble`` script (from the image label
``io.openshift.s2i.scripts-url``, default ``/usr/libexec/s2i``), then commit with its ``run`` script. The log
goes to ``STATE/buildlogs/<namespace>/<build>.log``, which the aggregated API serves as ``builds/log``.
Builds run one at a time (the machine has two cores). BuildConfigs with a ConfigChange trigger get their first
build when created.
"""

from __future__ import annotations

import json
import logging
import queue
import re
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import IO, Any

from .imports import ImageImporter, stream_path
from .kube import ApiError, Kube, meta, now, scenario, start_informer
from .kubelet import docker_auths
from .runtime import Buildah

LOG = logging.getLogger("simulator.builds")
PATH = "/apis/build.openshift.io/v1"
TERMINAL = ("Complete", "Failed", "Error", "Cancelled")
LOG_SNIPPET_LINES = 5
DEFAULT_S2I_SCRIPTS = "/usr/libexec/s2i"


class BuildFailure(Exception):
    def __init__(self, reason: str, message: str):
        self.reason = reason
        super().__init__(message)


class Cancelled(Exception):
    pass


def build_path(namespace: str, name: str) -> str:
    return f"{PATH}/namespaces/{namespace}/builds/{name}"


class BuildController:
    def __init__(self, kube: Kube, runtime: Buildah, registry: str, log_dir: Path, importer: ImageImporter,
                 stop: threading.Event):
        self.kube = kube
        self.runtime = runtime
        self.registry = registry
        self.log_dir = log_dir
        self.importer = importer
        self.stop = stop
        self.queue: "queue.Queue[tuple[str, str, str]]" = queue.Queue()
        self.seen: set[str] = set()  # uids queued or run, so each build runs once
        self.lock = threading.Lock()
        self.cancel_requests: set[str] = set()
        self.running_uid = ""

    def start(self) -> None:
        threading.Thread(target=self._work, name="builds", daemon=True).start()
        start_informer(self.kube, f"{PATH}/builds", self.on_build, self.stop, name="builds")
        start_informer(self.kube, f"{PATH}/buildconfigs", self.on_config, self.stop, name="buildconfigs")

    # -- events ---------------------------------------------------------------------------------------------

    def on_build(self, event: str, build: dict[str, Any]) -> None:
        metadata = meta(build)
        uid = metadata["uid"]
        status = build.get("status") or {}
        if event == "DELETED" or status.get("cancelled"):
            with self.lock:
                self.cancel_requests.add(uid)
            if status.get("cancelled") and status.get("phase") in ("New", "Pending", None) and uid not in self.seen:
                self._write(metadata["namespace"], metadata["name"], {"phase": "Cancelled", "reason": "CancelledBuild",
                                                                      "message": "The build was cancelled by the user.",
                                                                      "completionTimestamp": now()})
            return
        if status.get("phase", "New") != "New":
            return
        with self.lock:
            if uid in self.seen:
                return
            self.seen.add(uid)
        self.queue.put((metadata["namespace"], metadata["name"], uid))

    def on_config(self, event: str, config: dict[str, Any]) -> None:
        if event == "DELETED":
            return
        spec = config.get("spec") or {}
        triggers = [t.get("type") for t in spec.get("triggers") or []]
        if "ConfigChange" not in triggers or int((config.get("status") or {}).get("lastVersion") or 0) != 0:
            return
        metadata = meta(config)
        try:
            self.kube.create(f"{PATH}/namespaces/{metadata['namespace']}/buildconfigs/{metadata['name']}/instantiate", {
                "kind": "BuildRequest", "apiVersion": "build.openshift.io/v1",
                "metadata": {"name": metadata["name"]},
                "triggeredBy": [{"message": "Build configuration change"}],
            })
        except ApiError as error:
            LOG.info("ConfigChange build of %s/%s: %s", metadata["namespace"], metadata["name"], error)

    # -- running ----------------------------------------------------------------------------------------------

    def _work(self) -> None:
        while not self.stop.is_set():
            try:
                namespace, name, uid = self.queue.get(timeout=1.0)
            except queue.Empty:
                continue
            build = self.kube.get(build_path(namespace, name))
            if build is None or meta(build)["uid"] != uid:
                continue
            self.running_uid = uid
            try:
                self.run(build)
            except Exception:
                LOG.exception("build %s/%s", namespace, name)
            finally:
                self.running_uid = ""

    def cancelled(self, uid: str) -> bool:
        with self.lock:
            return uid in self.cancel_requests

    def _write(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        try:
            self.kube.merge_patch(build_path(namespace, name), {"status": status})
        except ApiError as error:
            if error.code != 404:
                raise

    def _output_stream_missing(self, build: dict[str, Any]) -> bool:
        """OpenShift keeps a build New (InvalidOutputReference) while its output ImageStream does not exist."""
        target = ((build.get("spec") or {}).get("output") or {}).get("to") or {}
        if target.get("kind") != "ImageStreamTag":
            return False
        namespace = target.get("namespace") or meta(build)["namespace"]
        return self.kube.get(stream_path(namespace, target.get("name", "").partition(":")[0])) is None

    def run(self, build: dict[str, Any]) -> None:
        metadata = meta(build)
        namespace, name, uid = metadata["namespace"], metadata["name"], metadata["uid"]
        if self._output_stream_missing(build):
            if (build.get("status") or {}).get("reason") != "InvalidOutputReference":
                self._write(namespace, name, {"phase": "New", "reason": "InvalidOutputReference",
                                              "message": "Output image could not be resolved."})
            timer = threading.Timer(3.0, self.queue.put, args=((namespace, name, uid),))
            timer.daemon = True
            timer.start()
            return
        log_path = self.log_dir / namespace / f"{name}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        spec = build.get("spec") or {}
        started = time.monotonic()
        self._write(namespace, name, {"phase": "Pending"})
        start_timestamp = now()
        with open(log_path, "wb") as log:
            try:
                output_reference, stream_tag = self._output(namespace, spec)
                running: dict[str, Any] = {"phase": "Running", "startTimestamp": start_timestamp}
                if output_reference:
                    running["outputDockerImageReference"] = output_reference
                self._write(namespace, name, running)
                digest = self._execute(build, log, output_reference)
                if stream_tag and digest:
                    stream_namespace, stream_name, tag = stream_tag
                    self.importer.record_push(stream_namespace, stream_name, tag,
                                              f"{self.registry}/{stream_namespace}/{stream_name}@{digest}", digest)
                final: dict[str, Any] = {"phase": "Complete"}
                if digest:
                    final["output"] = {"to": {"imageDigest": digest}}
            except Cancelled:
                _log(log, "Build was cancelled.")
                final = {"phase": "Cancelled", "reason": "CancelledBuild", "message": "The build was cancelled by the user."}
            except BuildFailure as failure:
                _log(log, f"error: {failure}")
                final = {"phase": "Failed", "reason": failure.reason, "message": str(failure)}
            except Exception as error:  # an infrastructure problem, which OpenShift reports as phase Error
                LOG.exception("build %s/%s", namespace, name)
                _log(log, f"error: {error}")
                final = {"phase": "Error", "reason": "BuildPodExists" if "exists" in str(error) else "GenericBuildFailed",
                         "message": str(error)}
        if final["phase"] == "Failed":
            lines = log_path.read_text(errors="replace").rstrip("\n").splitlines()
            final["logSnippet"] = "\n".join(lines[-LOG_SNIPPET_LINES:])
        final["startTimestamp"] = start_timestamp
        final["completionTimestamp"] = now()
        final["duration"] = int((time.monotonic() - started) * 1e9)  # time.Duration: nanoseconds
        self._write(namespace, name, final)
        LOG.info("build %s/%s: %s", namespace, name, final["phase"])

    def _output(self, namespace: str, spec: dict[str, Any]) -> tuple[str, tuple[str, str, str] | None]:
        target = (spec.get("output") or {}).get("to") or {}
        if not target:
            return "", None
        if target.get("kind") == "DockerImage":
            return target["name"], None
        if target.get("kind") == "ImageStreamTag":
            stream, _colon, tag = target.get("name", "").partition(":")
            stream_namespace = target.get("namespace") or namespace
            if not self.registry:
                raise BuildFailure("InvalidOutputReference", "no local registry plays the internal registry")
            return f"{self.registry}/{stream_namespace}/{stream}:{tag}", (stream_namespace, stream, tag)
        raise BuildFailure("InvalidOutputReference", f"output to {target.get('kind')} is not supported")

    def _execute(self, build: dict[str, Any], log: IO[bytes], output_reference: str) -> str:
        hook = scenario(build)
        uid = meta(build)["uid"]
        if hook == "hang":
            _log(log, "simulated hang (sim.mlops.test/scenario=hang): waiting until cancelled or deleted")
            while not self.stop.wait(0.5):
                if self.cancelled(uid):
                    raise Cancelled()
            raise Cancelled()
        if hook == "fail":
            _log(log, "STEP 1/1: simulated failure (sim.mlops.test/scenario=fail)")
            _log(log, "error building at STEP: exit status 1")
            raise BuildFailure("GenericBuildFailed", "Generic Build failure - check logs for details.")
        spec = build.get("spec") or {}
        strategy = spec.get("strategy") or {}
        namespace = meta(build)["namespace"]
        workdir = Path(tempfile.mkdtemp(prefix="sim-build-"))
        try:
            context = self._fetch_source(spec, workdir, log, uid)
            authfile = self._authfile(namespace, strategy, workdir)
            local_tag = f"localhost/sim-build-{self.runtime.instance}/{namespace}/{meta(build)['name']}:latest"
            if "dockerStrategy" in strategy:
                self._docker_build(spec, strategy["dockerStrategy"], context, local_tag, authfile, log, uid, namespace)
            elif "sourceStrategy" in strategy:
                self._source_build(spec, strategy["sourceStrategy"], context, local_tag, authfile, log, uid, namespace)
            else:
                raise BuildFailure("GenericBuildFailed", "this cluster runs Docker and Source strategy builds only")
            if not output_reference:
                return ""
            _log(log, f"\nPushing image {output_reference} ...")
            digest_file = workdir / "digest"
            command = ["push", "--tls-verify=false", "--digestfile", str(digest_file)]
            if authfile:
                command += ["--authfile", authfile]
            if self._stream(self.runtime.command(*command, local_tag, f"docker://{output_reference}"), log, uid) != 0:
                raise BuildFailure("PushImageToRegistryFailed", "Failed to push the image to the registry.")
            digest = digest_file.read_text().strip()
            _log(log, f"Successfully pushed {output_reference}@{digest}\nPush successful")
            return digest
        finally:
            self.runtime.run("rmi", "--force", local_tag, timeout=120)
            shutil.rmtree(workdir, ignore_errors=True)

    def _fetch_source(self, spec: dict[str, Any], workdir: Path, log: IO[bytes], uid: str) -> Path:
        source = spec.get("source") or {}
        context = workdir / "source"
        context.mkdir()
        git = source.get("git")
        if git:
            ref = git.get("ref") or ""
            _log(log, f"Cloning \"{git['uri']}\" ...")
            if self._stream(["git", "clone", "--quiet", git["uri"], str(context / "repo")], log, uid) != 0:
                raise BuildFailure("FetchSourceFailed", "Failed to fetch the input source.")
            if ref and self._stream(["git", "-C", str(context / "repo"), "checkout", "--quiet", ref], log, uid) != 0:
                raise BuildFailure("FetchSourceFailed", f"Failed to check out {ref!r}.")
            commit = subprocess.run(["git", "-C", str(context / "repo"), "rev-parse", "HEAD"], capture_output=True,
                                    text=True, check=False).stdout.strip()
            _log(log, f"\tCommit:\t{commit}")
            context = context / "repo"
        if source.get("contextDir"):
            context = context / source["contextDir"].strip("/")
            if not context.is_dir():
                raise BuildFailure("FetchSourceFailed", f"contextDir {source['contextDir']!r} does not exist")
        if source.get("dockerfile"):
            (context / "Dockerfile").write_text(source["dockerfile"])
        return context

    def _resolve_from(self, namespace: str, reference: dict[str, Any]) -> str:
        kind, name = reference.get("kind"), reference.get("name", "")
        if kind == "DockerImage":
            return name
        if kind == "ImageStreamTag":
            stream_name, _colon, tag = name.partition(":")
            stream = self.kube.get(stream_path(reference.get("namespace") or namespace, stream_name))
            for entry in ((stream or {}).get("status") or {}).get("tags") or []:
                if entry.get("tag") == (tag or "latest") and entry.get("items"):
                    return entry["items"][0]["dockerImageReference"]
            raise BuildFailure("InvalidInputReference", f'imagestreamtag "{name}" has no image yet')
        raise BuildFailure("InvalidInputReference", f"from.kind {kind!r} is not supported")

    def _authfile(self, namespace: str, strategy: dict[str, Any], workdir: Path) -> str | None:
        strategy_spec = next(iter(v for k, v in strategy.items() if k.endswith("Strategy")), {}) or {}
        secret_name = (strategy_spec.get("pullSecret") or {}).get("name")
        auths = {}
        if secret_name:
            auths = docker_auths(self.kube.get(f"/api/v1/namespaces/{namespace}/secrets/{secret_name}"))
        if not auths:
            return None
        path = workdir / "auth.json"
        path.write_text(json.dumps({"auths": auths}))
        path.chmod(0o600)
        return str(path)

    def _docker_build(self, spec: dict[str, Any], docker: dict[str, Any], context: Path, tag: str,
                      authfile: str | None, log: IO[bytes], uid: str, namespace: str) -> None:
        dockerfile = context / (docker.get("dockerfilePath") or "Dockerfile")
        if not dockerfile.is_file():
            raise BuildFailure("GenericBuildFailed", f"no Dockerfile at {docker.get('dockerfilePath') or 'Dockerfile'}")
        text = dockerfile.read_text()
        if docker.get("from"):
            text = replace_last_from(text, self._resolve_from(namespace, docker["from"]))
        env_lines = [f"ENV {entry['name']}={_quote(entry.get('value', ''))}" for entry in docker.get("env") or []
                     if "value" in entry]
        if env_lines:
            text = insert_after_last_from(text, env_lines)
        dockerfile.write_text(text)
        command = ["bud", "--isolation", "chroot", "--tls-verify=false", "-f", str(dockerfile), "-t", tag]
        for argument in docker.get("buildArgs") or []:
            command += ["--build-arg", f"{argument['name']}={argument.get('value', '')}"]
        if docker.get("noCache"):
            command.append("--no-cache")
        if authfile:
            command += ["--authfile", authfile]
        command.append(str(context))
        if self._stream(self.runtime.command(*command), log, uid) != 0:
            raise BuildFailure("DockerBuildFailed", "Docker build strategy has failed.")

    def _source_build(self, spec: dict[str, Any], source: dict[str, Any], context: Path, tag: str,
                      authfile: str | None, log: IO[bytes], uid: str, namespace: str) -> None:
        builder = self._resolve_from(namespace, source["from"])
        container = ""
        try:
            container = self.runtime.from_image(builder, self.runtime.container_name("build", uid[:8]), authfile=authfile)
            labels = (self.runtime.image_config(container).get("Labels") or {})
            scripts = (source.get("scripts") or labels.get("io.openshift.s2i.scripts-url") or
                       f"image://{DEFAULT_S2I_SCRIPTS}").replace("image://", "")
            user = self.runtime.image_config(container).get("User") or "1001"
            self.runtime.run("copy", "--chown", f"{user.split(':')[0]}:0", container, str(context), "/tmp/src")
            env = {entry["name"]: entry.get("value", "") for entry in source.get("env") or [] if "value" in entry}
            _log(log, f"---> Running {scripts}/assemble in {builder}")
            env_args = [arg for key, value in env.items() for arg in ("--env", f"{key}={value}")]
            command = self.runtime.command("run", "--isolation", "chroot", "--user", user, *env_args, container, "--",
                                           f"{scripts}/assemble")
            if self._stream(command, log, uid) != 0:
                raise BuildFailure("GenericS2IBuildFailed", "Generic S2I Build failure - check S2I logs for details.")
            config = ["config", "--cmd", f"{scripts}/run"]
            for key, value in env.items():
                config += ["--env", f"{key}={value}"]
            self.runtime.run(*config, container)
            if self.runtime.run("commit", container, tag).returncode != 0:
                raise BuildFailure("GenericS2IBuildFailed", "committing the built image failed")
        except BuildFailure:
            raise
        except Exception as error:
            raise BuildFailure("GenericS2IBuildFailed", str(error)) from None
        finally:
            if container:
                self.runtime.remove(container)

    def _stream(self, command: list[str], log: IO[bytes], uid: str) -> int:
        """Run a command, copying its output to the build log; stop it when the build is cancelled."""
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                   start_new_session=True)
        watcher_done = threading.Event()

        def watch_cancel() -> None:
            while not watcher_done.wait(0.5):
                if self.cancelled(uid) or self.stop.is_set():
                    process.kill()
                    return

        threading.Thread(target=watch_cancel, daemon=True).start()
        assert process.stdout is not None
        for line in iter(process.stdout.readline, b""):
            log.write(line)
            log.flush()
        code = process.wait()
        watcher_done.set()
        if self.cancelled(uid):
            raise Cancelled()
        return code


def replace_last_from(dockerfile: str, image: str) -> str:
    """Point the last FROM at ``image``, as OpenShift does with dockerStrategy.from (keeps ``AS name``)."""
    lines = dockerfile.splitlines()
    for index in range(len(lines) - 1, -1, -1):
        match = re.match(r"^(\s*FROM\s+(?:--platform=\S+\s+)?)(\S+)(.*)$", lines[index], re.IGNORECASE)
        if match:
            lines[index] = f"{match.group(1)}{image}{match.group(3)}"
            return "\n".join(lines) + "\n"
    raise BuildFailure("InvalidDockerfile", "the Dockerfile has no FROM instruction")


def insert_after_last_from(dockerfile: str, new_lines: list[str]) -> str:
    lines = dockerfile.splitlines()
    for index in range(len(lines) - 1, -1, -1):
        if re.match(r"^\s*FROM\s", lines[index], re.IGNORECASE):
            return "\n".join(lines[: index + 1] + new_lines + lines[index + 1:]) + "\n"
    return dockerfile


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _log(log: IO[bytes], text: str) -> None:
    log.write(text.encode() + b"\n")
    log.flush()
