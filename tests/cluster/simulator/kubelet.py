"""A one-node kubelet and scheduler: binds pods to the simulated Node and runs them with buildah.

- The Node (Ready, InternalIP 127.0.0.1, kubelet port) is registered and its Ready condition heartbeats.
- Pending pods without a node are bound to it through the ``binding`` subresource (a pod whose nodeSelector the
  node does not match stays Pending with PodScheduled=False, Unschedulable).
- Pods bound to it run: images pulled from this machine's registries (with the pod's and its ServiceAccount's
  dockerconfigjson pull secrets), init containers in order, then the containers together, each with
  ``buildah run --isolation chroot --user <uid>:<gid>``; env, envFrom, emptyDir, ConfigMap, Secret, downwardAPI,
  projected (including ServiceAccount tokens), PVC and hostPath volumes; the termination message file;
  restartPolicy; activeDeadlineSeconds; graceful deletion.
- An HTTPS endpoint serves ``/containerLogs/<ns>/<pod>/<container>`` to kube-apiserver (client certificate from
  the cluster CA, then a SubjectAccessReview on ``nodes/proxy`` as a real kubelet does), so ``pods/log`` works.
"""

from __future__ import annotations

import base64
import datetime
import json
import logging
import os
import platform
import select
import shutil
import ssl
import subprocess
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from . import podspec
from .kube import ApiError, Kube, meta, now, scenario, start_informer
from .runtime import Buildah, Mount, RuntimeFailure, copy_output, kill

LOG = logging.getLogger("simulator.kubelet")
NODE_NAME = "mlops-sim-node"
# Pods that another controller runs itself (a TaskRun's steps): the kubelet only serves their logs and deletes them.
RUN_BY_ANNOTATION = "sim.mlops.test/run-by"
HEARTBEAT_SECONDS = 20.0
NODE_ALLOCATABLE = {"cpu": "2", "memory": "24Gi", "pods": "110", "ephemeral-storage": "100Gi"}
PULL_BACKOFF_MAX_SECONDS = 300.0
MAX_TERMINATION_MESSAGE_BYTES = 4096
FALLBACK_LOG_LINES = 80
DEADLINE_MESSAGE = "Pod was active on the node longer than the specified deadline"


@dataclass
class ContainerRun:
    """What the kubelet knows about one container of a pod."""

    name: str
    image: str
    init: bool = False
    state: dict[str, Any] = field(default_factory=lambda: {"waiting": {"reason": "ContainerCreating"}})
    last_state: dict[str, Any] = field(default_factory=dict)
    restart_count: int = 0
    container_id: str = ""
    image_id: str = ""
    process: subprocess.Popen | None = None
    log_path: Path | None = None

    def status(self) -> dict[str, Any]:
        running = "running" in self.state
        return {
            "name": self.name,
            "image": self.image,
            "imageID": self.image_id,
            "containerID": f"buildah://{self.container_id}" if self.container_id else "",
            "ready": running and not self.init,
            "started": running,
            "restartCount": self.restart_count,
            "state": self.state,
            "lastState": self.last_state,
        }


class PodWorker:
    """Runs one pod from bound to terminal (or deleted), reporting status as it goes."""

    def __init__(self, kubelet: "Kubelet", pod: dict[str, Any]):
        self.kubelet = kubelet
        self.kube = kubelet.kube
        self.pod = pod
        metadata = meta(pod)
        self.namespace = metadata["namespace"]
        self.name = metadata["name"]
        self.uid = metadata["uid"]
        self.spec = pod.get("spec") or {}
        self.path = f"/api/v1/namespaces/{self.namespace}/pods/{self.name}"
        self.directory = kubelet.pods_dir / self.namespace / self.name / self.uid
        self.stop = threading.Event()  # set when the pod is being deleted
        self.grace_seconds = float(self.spec.get("terminationGracePeriodSeconds", 30))
        self.lock = threading.RLock()
        self.phase = "Pending"
        self.reason = ""
        self.message = ""
        self.start_time = now()
        self.deadline_exceeded = False
        self.init_runs = [ContainerRun(c["name"], c.get("image", ""), init=True) for c in self.spec.get("initContainers") or []]
        self.runs = [ContainerRun(c["name"], c.get("image", "")) for c in self.spec.get("containers") or []]
        self.buildah_containers: dict[str, str] = {}
        self.done = threading.Event()
        self.thread = threading.Thread(target=self.run, name=f"pod-{self.namespace}-{self.name}", daemon=True)

    # -- status --------------------------------------------------------------------------------------------

    def all_runs(self) -> list[ContainerRun]:
        return self.init_runs + self.runs

    def find(self, container: str) -> ContainerRun | None:
        return next((run for run in self.all_runs() if run.name == container), None)

    def report(self) -> None:
        with self.lock:
            timestamp = now()
            initialized = all("terminated" in run.state and run.state["terminated"].get("exitCode") == 0
                              for run in self.init_runs)
            ready = self.phase == "Running" and all(run.status()["ready"] for run in self.runs)

            def condition(kind: str, value: bool, reason: str = "") -> dict[str, Any]:
                entry = {"type": kind, "status": "True" if value else "False", "lastProbeTime": None,
                         "lastTransitionTime": timestamp}
                if reason and not value:
                    entry["reason"] = reason
                return entry
            status: dict[str, Any] = {
                "phase": self.phase,
                "hostIP": "127.0.0.1",
                "hostIPs": [{"ip": "127.0.0.1"}],
                "podIP": "127.0.0.1",
                "podIPs": [{"ip": "127.0.0.1"}],
                "startTime": self.start_time,
                "conditions": [
                    condition("PodReadyToStartContainers", self.phase != "Pending" or any(r.container_id for r in self.all_runs())),
                    condition("Initialized", initialized, "ContainersNotInitialized"),
                    condition("Ready", ready, "PodCompleted" if self.phase in ("Succeeded", "Failed") else "ContainersNotReady"),
                    condition("ContainersReady", ready, "PodCompleted" if self.phase in ("Succeeded", "Failed") else "ContainersNotReady"),
                    condition("PodScheduled", True),
                ],
                "containerStatuses": [run.status() for run in self.runs],
                "reason": self.reason or None,
                "message": self.message or None,
            }
            if self.init_runs:
                status["initContainerStatuses"] = [run.status() for run in self.init_runs]
        try:
            self.kube.merge_patch(self.path + "/status", {"status": status})
        except ApiError as error:
            if error.code != 404:
                LOG.warning("status of pod %s/%s: %s", self.namespace, self.name, error)

    # -- the pod's life ---------------------------------------------------------------------------------------

    def run(self) -> None:
        try:
            self._run()
        except Exception as error:  # report, never leave the pod hanging silently
            LOG.exception("pod %s/%s", self.namespace, self.name)
            with self.lock:
                self.phase, self.reason, self.message = "Failed", "SimulatorError", str(error)
            self.report()
        finally:
            self._cleanup()
            self.done.set()
            self.kubelet.worker_finished(self)

    def _run(self) -> None:
        self.report()
        hook = scenario(self.pod)
        if hook == "hang":
            self.stop.wait()
            return
        if hook == "fail":
            for run in self.runs:
                run.state = {"terminated": {"exitCode": 1, "reason": "Error", "startedAt": now(), "finishedAt": now(),
                                            "message": "simulated failure (sim.mlops.test/scenario=fail)"}}
            with self.lock:
                self.phase = "Failed"
            self.report()
            return
        threading.Thread(target=self._watch_deadline, daemon=True).start()
        volumes = self._wait_for(self._prepare_volumes, "ContainerCreating")
        if volumes is None:
            return
        authfile = self._write_authfile()
        for run in self.all_runs():
            if not self._create_container(run, authfile):
                return
        restart_policy = self.spec.get("restartPolicy", "Always")
        for run in self.init_runs:
            while True:
                exit_code = self._run_container(run, volumes)
                if exit_code is None:
                    return
                if exit_code == 0:
                    break
                if restart_policy == "Never":
                    self._finish("Failed")
                    return
                if not self._back_off(run):
                    return
        with self.lock:
            self.phase = "Running"
        threads = [threading.Thread(target=self._keep_running, args=(run, volumes, restart_policy), daemon=True)
                   for run in self.runs]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if self.stop.is_set() or self.deadline_exceeded:
            return
        failed = any(run.state.get("terminated", {}).get("exitCode", 1) != 0 for run in self.runs)
        self._finish("Failed" if failed else "Succeeded")

    def _finish(self, phase: str) -> None:
        with self.lock:
            if self.phase in ("Succeeded", "Failed"):
                return
            self.phase = phase
        self.report()

    def _keep_running(self, run: ContainerRun, volumes: dict[str, Path], restart_policy: str) -> None:
        while True:
            exit_code = self._run_container(run, volumes)
            if exit_code is None:
                return
            if restart_policy == "Never" or (restart_policy == "OnFailure" and exit_code == 0):
                return
            if not self._back_off(run):
                return

    def _back_off(self, run: ContainerRun) -> bool:
        """Wait before a restart (10 s doubling to 5 min, the first restart at once); False when the pod stops."""
        delay = 0.0 if run.restart_count == 0 else min(10.0 * 2 ** (run.restart_count - 1), 300.0)
        with self.lock:
            run.last_state = run.state
            run.restart_count += 1
            if delay:
                run.state = {"waiting": {"reason": "CrashLoopBackOff",
                                         "message": f"back-off {int(delay)}s restarting failed container={run.name} "
                                                    f"pod={self.name}_{self.namespace}({self.uid})"}}
        self.report()
        return not self.stop.wait(delay) and not self.deadline_exceeded

    def _wait_for(self, step: Any, waiting_reason: str) -> Any:
        """Retry ``step`` while it raises ConfigError (a missing ConfigMap or Secret appears later)."""
        reported = ""
        while not self.stop.is_set() and not self.deadline_exceeded:
            try:
                return step()
            except podspec.ConfigError as error:
                if str(error) != reported:
                    reported = str(error)
                    with self.lock:
                        for run in self.all_runs():
                            run.state = {"waiting": {"reason": waiting_reason, "message": str(error)}}
                    self.report()
                self.stop.wait(2.0)
        return None

    def _create_container(self, run: ContainerRun, authfile: str | None) -> bool:
        spec = self._container_spec(run)
        policy = {"Always": "true", "IfNotPresent": "false", "Never": "never"}.get(spec.get("imagePullPolicy", "Always"), "true")
        delay = 10.0
        if scenario(self.pod) == "image-pull-error":
            failure = RuntimeFailure("ErrImagePull", f'Failed to pull image "{run.image}": simulated '
                                     "(sim.mlops.test/scenario=image-pull-error)")
        else:
            failure = None
        while not self.stop.is_set() and not self.deadline_exceeded:
            try:
                if failure:
                    raise failure
                name = self.kubelet.runtime.container_name("pod", f"{self.uid[:8]}-{run.name}")
                self.kubelet.runtime.run("rm", name, timeout=60)  # a leftover of an interrupted earlier attempt
                container_id = self.kubelet.runtime.from_image(run.image, name, policy, authfile)
                self.buildah_containers[run.name] = container_id
                run.container_id = container_id
                info = self.kubelet.runtime.run("inspect", "--type", "container", container_id)
                if info.returncode == 0:
                    details = json.loads(info.stdout)
                    digest = details.get("FromImageDigest", "")
                    run.image_id = f"{repository_of(run.image)}@{digest}" if digest else details.get("FromImageID", "")
                return True
            except RuntimeFailure as error:
                with self.lock:
                    run.state = {"waiting": {"reason": error.reason, "message": str(error)}}
                self.report()
                if self.stop.wait(3.0):
                    return False
                with self.lock:
                    run.state = {"waiting": {"reason": "ImagePullBackOff",
                                             "message": f'Back-off pulling image "{run.image}"'}}
                self.report()
                if self.stop.wait(delay):
                    return False
                delay = min(delay * 2, PULL_BACKOFF_MAX_SECONDS)
        return False

    def _container_spec(self, run: ContainerRun) -> dict[str, Any]:
        key = "initContainers" if run.init else "containers"
        return next(c for c in self.spec.get(key) or [] if c["name"] == run.name)

    def _run_container(self, run: ContainerRun, volumes: dict[str, Path]) -> int | None:
        """Run the container once; its exit code, or None when the pod is stopping or past its deadline."""
        spec = self._container_spec(run)
        try:
            env = podspec.environment(self.pod, spec, self.kubelet.lookup(self.namespace), NODE_ALLOCATABLE)
            uid, gid = podspec.run_as(self.pod, spec, self.kubelet.namespace(self.namespace))
        except podspec.ConfigError as error:
            with self.lock:
                run.state = {"waiting": {"reason": "CreateContainerConfigError", "message": str(error)}}
            self.report()
            if self.stop.wait(2.0) or self.deadline_exceeded:
                return None
            return self._run_container(run, volumes)
        image_config = self.kubelet.runtime.image_config(run.container_id)
        all_env = {item.split("=", 1)[0]: item.split("=", 1)[1] for item in image_config.get("Env") or [] if "=" in item}
        all_env.update(self.kubelet.service_env)
        all_env["HOSTNAME"] = self.name
        all_env.update(env)
        all_env.setdefault("HOME", "/")
        argv = podspec.command_line(spec, image_config, all_env)
        if not argv:
            with self.lock:
                run.state = {"waiting": {"reason": "CreateContainerError", "message": "no command specified"}}
            self.report()
            return None if self.stop.wait(5.0) else 1
        mounts = self._mounts(spec, volumes)
        message_path = spec.get("terminationMessagePath") or podspec.DEFAULT_TERMINATION_MESSAGE_PATH
        message_file = self.directory / "termination" / f"{run.name}-{run.restart_count}"
        message_file.parent.mkdir(parents=True, exist_ok=True)
        message_file.write_bytes(b"")
        message_file.chmod(0o666)
        mounts.append(Mount(str(message_file), message_path))
        run.log_path = self.directory / "logs" / f"{run.name}.log"
        run.log_path.parent.mkdir(parents=True, exist_ok=True)
        if run.log_path.exists() and run.restart_count:
            run.log_path.replace(run.log_path.with_suffix(".previous.log"))
        started_at = now()
        process = self.kubelet.runtime.start(run.container_id, argv, all_env, mounts, f"{uid}:{gid}",
                                             spec.get("workingDir") or None, hostname=self.name)
        with self.lock:
            run.process = process
            run.state = {"running": {"startedAt": started_at}}
            if not run.init and self.phase == "Pending":
                self.phase = "Running"
        self.report()
        with open(run.log_path, "ab") as log:
            copy_output(process, log)
        exit_code = process.wait()
        run.process = None
        message = message_file.read_bytes()[:MAX_TERMINATION_MESSAGE_BYTES].decode(errors="replace")
        if not message and exit_code != 0 and spec.get("terminationMessagePolicy") == "FallbackToLogsOnError":
            message = _log_tail_text(run.log_path, FALLBACK_LOG_LINES)[-2048:]
        terminated: dict[str, Any] = {
            "exitCode": exit_code if exit_code >= 0 else 128 - exit_code,
            "reason": "Completed" if exit_code == 0 else "Error",
            "startedAt": started_at,
            "finishedAt": now(),
            "containerID": f"buildah://{run.container_id}",
        }
        if message:
            terminated["message"] = message
        with self.lock:
            run.state = {"terminated": terminated}
        if self.stop.is_set() or self.deadline_exceeded:
            return None
        self.report()
        return exit_code

    def _mounts(self, spec: dict[str, Any], volumes: dict[str, Path]) -> list[Mount]:
        mounts = []
        for mount in spec.get("volumeMounts") or []:
            source = volumes.get(mount["name"])
            if source is None:
                continue
            host = source / mount["subPath"] if mount.get("subPath") else source
            if mount.get("subPath") and not host.exists():
                host.mkdir(parents=True, exist_ok=True)
                host.chmod(0o777)
            mounts.append(Mount(str(host), mount["mountPath"], bool(mount.get("readOnly"))))
        return mounts

    # -- volumes, secrets ---------------------------------------------------------------------------------------

    def _prepare_volumes(self) -> dict[str, Path]:
        lookup = self.kubelet.lookup(self.namespace)
        result: dict[str, Path] = {}
        base = self.directory / "volumes"
        for volume in self.spec.get("volumes") or []:
            name = volume["name"]
            target = base / name
            if "emptyDir" in volume:
                target.mkdir(parents=True, exist_ok=True)
                target.chmod(0o777)  # as a kubelet makes them, so any UID can write
            elif "configMap" in volume or "secret" in volume:
                is_secret = "secret" in volume
                source = volume["secret" if is_secret else "configMap"]
                obj_name = source.get("secretName" if is_secret else "name", "")
                obj = lookup("secrets" if is_secret else "configmaps", obj_name)
                if obj is None and not source.get("optional"):
                    raise podspec.ConfigError(f'{"secret" if is_secret else "configmap"} "{obj_name}" not found')
                _write_files(target, podspec.key_files(obj, source.get("items"), is_secret), source.get("defaultMode", 0o644))
            elif "downwardAPI" in volume:
                source = volume["downwardAPI"]
                _write_files(target, self._downward_files(source.get("items") or []), source.get("defaultMode", 0o644))
            elif "projected" in volume:
                _write_files(target, self._projected_files(volume["projected"], lookup),
                             volume["projected"].get("defaultMode", 0o644))
            elif "persistentVolumeClaim" in volume:
                target = self.kubelet.claims_dir / self.namespace / volume["persistentVolumeClaim"]["claimName"]
                target.mkdir(parents=True, exist_ok=True)
                target.chmod(0o777)
            elif "hostPath" in volume:
                target = Path(volume["hostPath"]["path"])
            else:
                raise podspec.ConfigError(f"volume {name!r}: this simulated kubelet supports emptyDir, configMap, "
                                          "secret, downwardAPI, projected, persistentVolumeClaim and hostPath")
            result[name] = target
        return result

    def _downward_files(self, items: list[dict[str, Any]]) -> dict[str, bytes]:
        files = {}
        for item in items:
            if "fieldRef" in item:
                files[item["path"]] = podspec.field_value(self.pod, item["fieldRef"]["fieldPath"]).encode()
            elif "resourceFieldRef" in item:
                container = next((c for c in self.spec.get("containers") or []
                                  if c["name"] == item["resourceFieldRef"].get("containerName")), {})
                files[item["path"]] = podspec.resource_value(container, item["resourceFieldRef"]["resource"],
                                                             NODE_ALLOCATABLE).encode()
        return files

    def _projected_files(self, projected: dict[str, Any], lookup: podspec.Lookup) -> dict[str, bytes]:
        files: dict[str, bytes] = {}
        for source in projected.get("sources") or []:
            if "serviceAccountToken" in source:
                token_source = source["serviceAccountToken"]
                files[token_source["path"]] = self._token(token_source).encode()
            elif "configMap" in source or "secret" in source:
                is_secret = "secret" in source
                reference = source["secret" if is_secret else "configMap"]
                obj = lookup("secrets" if is_secret else "configmaps", reference.get("name", ""))
                if obj is None and not reference.get("optional"):
                    raise podspec.ConfigError(f'{"secret" if is_secret else "configmap"} "{reference.get("name")}" not found')
                files.update(podspec.key_files(obj, reference.get("items"), is_secret))
            elif "downwardAPI" in source:
                files.update(self._downward_files(source["downwardAPI"].get("items") or []))
        return files

    def _token(self, source: dict[str, Any]) -> str:
        account = self.spec.get("serviceAccountName") or "default"
        request = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {
                "audiences": [source["audience"]] if source.get("audience") else [],
                "expirationSeconds": int(source.get("expirationSeconds", 3600)),
                "boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": self.name, "uid": self.uid},
            },
        }
        try:
            answer = self.kube.create(f"/api/v1/namespaces/{self.namespace}/serviceaccounts/{account}/token", request)
        except ApiError as error:
            raise podspec.ConfigError(f"cannot get a token for serviceaccount {account}: {error}") from None
        return answer["status"]["token"]

    def _write_authfile(self) -> str | None:
        """An auth.json with the dockerconfigjson pull secrets of the pod and of its ServiceAccount."""
        names = [ref.get("name") for ref in self.spec.get("imagePullSecrets") or []]
        account = self.kubelet.kube.get(
            f"/api/v1/namespaces/{self.namespace}/serviceaccounts/{self.spec.get('serviceAccountName') or 'default'}")
        names += [ref.get("name") for ref in (account or {}).get("imagePullSecrets") or []]
        auths: dict[str, Any] = {}
        lookup = self.kubelet.lookup(self.namespace)
        for name in filter(None, names):
            secret = lookup("secrets", name)
            auths.update(docker_auths(secret))
        if not auths:
            return None
        path = self.directory / "auth.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(json.dumps({"auths": auths}))
        return str(path)

    # -- deadline, deletion, clean-up ------------------------------------------------------------------------

    def _watch_deadline(self) -> None:
        seconds = self.spec.get("activeDeadlineSeconds")
        if not seconds:
            return
        if self.done.wait(float(seconds)) or self.stop.is_set():
            return
        LOG.info("pod %s/%s exceeded activeDeadlineSeconds=%s", self.namespace, self.name, seconds)
        self.deadline_exceeded = True
        self._kill_all(grace=float(self.spec.get("terminationGracePeriodSeconds", 30)))
        with self.lock:
            self.phase, self.reason, self.message = "Failed", "DeadlineExceeded", DEADLINE_MESSAGE
            for run in self.all_runs():
                if "terminated" not in run.state:
                    run.state = {"terminated": {"exitCode": 137, "reason": "Error", "finishedAt": now(),
                                                "startedAt": run.state.get("running", {}).get("startedAt", now())}}
        self.report()

    def _kill_all(self, grace: float) -> None:
        processes = [run.process for run in self.all_runs() if run.process is not None]
        threads = [threading.Thread(target=kill, args=(process, grace), daemon=True) for process in processes]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    def terminate(self, grace_seconds: float | None) -> None:
        """The pod is being deleted: stop its containers within the grace period."""
        if self.stop.is_set():
            return
        self.stop.set()
        self._kill_all(self.grace_seconds if grace_seconds is None else grace_seconds)

    def _cleanup(self) -> None:
        for container_id in self.buildah_containers.values():
            self.kubelet.runtime.remove(container_id)
        shutil.rmtree(self.directory / "volumes", ignore_errors=True)


def repository_of(image: str) -> str:
    """The repository of an image reference, without tag or digest (the registry's port stays)."""
    name = image.split("@")[0]
    last = name.rsplit("/", 1)[-1]
    return name[: len(name) - len(last)] + last.split(":")[0]


def docker_auths(secret: dict[str, Any] | None) -> dict[str, Any]:
    """The ``auths`` of a kubernetes.io/dockerconfigjson (or legacy dockercfg) Secret."""
    if not secret:
        return {}
    data = secret.get("data") or {}
    try:
        if ".dockerconfigjson" in data:
            return json.loads(base64.b64decode(data[".dockerconfigjson"])).get("auths") or {}
        if ".dockercfg" in data:
            return json.loads(base64.b64decode(data[".dockercfg"])) or {}
    except ValueError:
        return {}
    return {}


def _write_files(directory: Path, files: dict[str, bytes], mode: int) -> None:
    if directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    directory.chmod(0o755)
    for relative, content in files.items():
        path = directory / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
        path.chmod(mode)


def _log_tail_text(path: Path | None, lines: int) -> str:
    if path is None or not path.exists():
        return ""
    entries = [parse_cri_line(line)[1] for line in path.read_bytes().splitlines()[-lines:]]
    return b"\n".join(entries).decode(errors="replace")


def parse_cri_line(line: bytes) -> tuple[str, bytes]:
    """(timestamp, content) of one CRI log line ``<time> <stream> <F|P> <content>``."""
    parts = line.split(b" ", 3)
    if len(parts) < 4:
        return "", line
    return parts[0].decode(), parts[3]


class Kubelet:
    def __init__(self, kube: Kube, runtime: Buildah, state_dir: Path, certs: dict[str, Any], stop: threading.Event):
        self.kube = kube
        self.runtime = runtime
        self.stop = stop
        self.certs = certs
        self.pods_dir = state_dir / "pods"
        self.claims_dir = state_dir / "claims"
        self.workers: dict[tuple[str, str], PodWorker] = {}
        self.workers_lock = threading.Lock()
        # (namespace, pod) -> an object with find(container) -> ContainerRun, for pods run by other controllers
        self.log_sources: dict[tuple[str, str], Any] = {}
        self.port = 0
        api = urlsplit(kube.host)
        self.service_env = {
            "KUBERNETES_SERVICE_HOST": api.hostname or "127.0.0.1",
            "KUBERNETES_SERVICE_PORT": str(api.port or 443),
            "KUBERNETES_SERVICE_PORT_HTTPS": str(api.port or 443),
            "KUBERNETES_PORT": f"tcp://{api.hostname}:{api.port or 443}",
        }

    def lookup(self, namespace: str) -> podspec.Lookup:
        def get(kind: str, name: str) -> dict[str, Any] | None:
            return self.kube.get(f"/api/v1/namespaces/{namespace}/{kind}/{name}") if name else None
        return get

    def namespace(self, name: str) -> dict[str, Any] | None:
        return self.kube.get(f"/api/v1/namespaces/{name}")

    # -- node -----------------------------------------------------------------------------------------------

    def register_node(self) -> None:
        self.kube.apply(f"/api/v1/nodes/{NODE_NAME}", {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": NODE_NAME, "labels": {
                "kubernetes.io/hostname": NODE_NAME,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "beta.kubernetes.io/os": "linux",
                "beta.kubernetes.io/arch": "amd64",
                "node-role.kubernetes.io/worker": "",
            }},
        })
        self.heartbeat()

    def heartbeat(self) -> None:
        timestamp = now()
        version = (self.kube.get("/version") or {}).get("gitVersion", "v0.0.0")

        def condition(kind: str, status: str, reason: str, message: str) -> dict[str, Any]:
            return {"type": kind, "status": status, "reason": reason, "message": message,
                    "lastHeartbeatTime": timestamp, "lastTransitionTime": self._since}

        status = {
            "conditions": [
                condition("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
                condition("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
                condition("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
                condition("Ready", "True", "KubeletReady", "kubelet is posting ready status (simulated: pods run with buildah)"),
            ],
            "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}, {"type": "Hostname", "address": NODE_NAME}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": self.port}},
            "capacity": NODE_ALLOCATABLE,
            "allocatable": NODE_ALLOCATABLE,
            "nodeInfo": {
                "machineID": "mlops-sim", "systemUUID": "mlops-sim", "bootID": self._boot_id,
                "kernelVersion": platform.release(), "osImage": "mlops.notebooks simulated node",
                "containerRuntimeVersion": "buildah://1", "kubeletVersion": version, "kubeProxyVersion": version,
                "operatingSystem": "linux", "architecture": "amd64",
            },
        }
        self.kube.merge_patch(f"/api/v1/nodes/{NODE_NAME}/status", {"status": status})

    _since = now()
    _boot_id = os.urandom(8).hex()

    def heartbeat_loop(self) -> None:
        while not self.stop.wait(HEARTBEAT_SECONDS):
            try:
                self.heartbeat()
            except Exception as error:  # the API server may be restarting
                LOG.info("node heartbeat: %s", error)

    # -- scheduling -----------------------------------------------------------------------------------------

    def on_unscheduled_pod(self, event: str, pod: dict[str, Any]) -> None:
        metadata = meta(pod)
        spec = pod.get("spec") or {}
        if event == "DELETED" or metadata.get("deletionTimestamp") or spec.get("nodeName"):
            return
        if spec.get("schedulerName", "default-scheduler") != "default-scheduler":
            return
        path = f"/api/v1/namespaces/{metadata['namespace']}/pods/{metadata['name']}"
        selector = spec.get("nodeSelector") or {}
        labels = {"kubernetes.io/hostname": NODE_NAME, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
                  "node-role.kubernetes.io/worker": ""}
        if any(labels.get(key) != value for key, value in selector.items()):
            self.kube.merge_patch(path + "/status", {"status": {"conditions": [{
                "type": "PodScheduled", "status": "False", "reason": "Unschedulable", "lastTransitionTime": now(),
                "message": "0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector.",
            }]}})
            return
        try:
            self.kube.create(path + "/binding", {
                "apiVersion": "v1", "kind": "Binding",
                "metadata": {"name": metadata["name"], "namespace": metadata["namespace"], "uid": metadata["uid"]},
                "target": {"apiVersion": "v1", "kind": "Node", "name": NODE_NAME},
            })
        except ApiError as error:
            if error.code not in (404, 409):
                raise

    # -- running --------------------------------------------------------------------------------------------

    def on_node_pod(self, event: str, pod: dict[str, Any]) -> None:
        metadata = meta(pod)
        key = (metadata["namespace"], metadata["name"])
        with self.workers_lock:
            worker = self.workers.get(key)
            if worker is not None and worker.uid != metadata["uid"]:
                worker = None  # an older pod of the same name
            if event == "DELETED":
                self.log_sources.pop(key, None)
                if worker is not None:
                    self.workers.pop(key, None)
                    threading.Thread(target=worker.terminate, args=(0,), daemon=True).start()
                return
            if metadata.get("deletionTimestamp"):
                grace = metadata.get("deletionGracePeriodSeconds")
                threading.Thread(target=self._delete, args=(pod, worker, grace), daemon=True).start()
                return
            phase = (pod.get("status") or {}).get("phase")
            if (metadata.get("annotations") or {}).get(RUN_BY_ANNOTATION):
                return
            if worker is None and phase not in ("Succeeded", "Failed"):
                worker = PodWorker(self, pod)
                self.workers[key] = worker
                worker.thread.start()

    def _delete(self, pod: dict[str, Any], worker: PodWorker | None, grace: float | None) -> None:
        metadata = meta(pod)
        if worker is not None:
            worker.terminate(grace)
            worker.done.wait(float(grace or 0) + 60)
        # The kubelet confirms the graceful deletion, which removes the object.
        try:
            self.kube.delete(f"/api/v1/namespaces/{metadata['namespace']}/pods/{metadata['name']}",
                             body={"apiVersion": "v1", "kind": "DeleteOptions", "gracePeriodSeconds": 0,
                                   "preconditions": {"uid": metadata["uid"]}})
        except ApiError as error:  # already gone, or a newer pod of the same name (409 on the uid precondition)
            LOG.info("confirming deletion of pod %s/%s: %s", metadata["namespace"], metadata["name"], error)
        shutil.rmtree(self.pods_dir / metadata["namespace"] / metadata["name"] / metadata["uid"], ignore_errors=True)

    def worker_finished(self, worker: PodWorker) -> None:
        # Keep finished workers: their logs stay readable until the pod is deleted.
        pass

    def find_worker(self, namespace: str, name: str) -> Any:
        """The PodWorker of a pod, or the log source of a pod another controller runs (both have find())."""
        with self.workers_lock:
            return self.workers.get((namespace, name)) or self.log_sources.get((namespace, name))

    # -- start and stop -------------------------------------------------------------------------------------

    def shutdown(self) -> None:
        """Kill what runs (the simulator is going away) and remove the working containers."""
        with self.workers_lock:
            workers = list(self.workers.values())
        threads = [threading.Thread(target=worker.terminate, args=(2.0,), daemon=True) for worker in workers]
        for thread in threads:
            thread.start()
        for worker in workers:
            worker.done.wait(15.0)
        self.runtime.remove_all_named()

    def start(self) -> None:
        self.runtime.remove_all_named()
        self.port = serve_logs(self)
        self.register_node()
        threading.Thread(target=self.heartbeat_loop, name="node-heartbeat", daemon=True).start()
        start_informer(self.kube, "/api/v1/pods", self.on_unscheduled_pod, self.stop,
                       params={"fieldSelector": "spec.nodeName=,status.phase=Pending"}, name="scheduler")
        start_informer(self.kube, "/api/v1/pods", self.on_node_pod, self.stop,
                       params={"fieldSelector": f"spec.nodeName={NODE_NAME}"}, name="kubelet")


# -- the kubelet's HTTPS endpoint ---------------------------------------------------------------------------


class LogHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: "LogServer"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class names it so
        LOG.info("kubelet endpoint: %s", format % args)

    def do_GET(self) -> None:  # noqa: N802 - the base class names it so
        try:
            self._serve()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _send(self, code: int, text: str) -> None:
        data = text.encode()
        self.send_response(code)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _serve(self) -> None:
        split = urlsplit(self.path)
        if split.path in ("/healthz", "/livez", "/readyz"):
            self._send(200, "ok")
            return
        peer = self.connection.getpeercert() if isinstance(self.connection, ssl.SSLSocket) else None
        if not peer:
            self._send(401, "Unauthorized")
            return
        user = next((v for rdn in peer.get("subject", ()) for k, v in rdn if k == "commonName"), "")
        groups = [v for rdn in peer.get("subject", ()) for k, v in rdn if k == "organizationName"]
        kubelet = self.server.kubelet
        review = {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview", "spec": {
            "user": user, "groups": groups,
            "resourceAttributes": {"verb": "get", "resource": "nodes", "subresource": "proxy", "name": NODE_NAME}}}
        answer = kubelet.kube.create("/apis/authorization.k8s.io/v1/subjectaccessreviews", review)
        if not (answer.get("status") or {}).get("allowed"):
            self._send(403, f"Forbidden (user={user}, verb=get, resource=nodes, subresource=proxy)")
            return
        parts = [unquote(part) for part in split.path.strip("/").split("/")]
        if len(parts) != 4 or parts[0] != "containerLogs":
            self._send(404, "404 page not found")
            return
        _container_logs, namespace, pod, container = parts
        query = dict(parse_qsl(split.query))
        worker = kubelet.find_worker(namespace, pod)
        run = worker.find(container) if worker else None
        if worker is None or run is None or run.log_path is None:
            self._send(404, f'container "{container}" in pod "{pod}" not found')
            return
        path = run.log_path.with_suffix(".previous.log") if query.get("previous") == "true" else run.log_path
        if not path.exists():
            self._send(400, f'previous terminated container "{container}" in pod "{pod}" not found')
            return
        self._stream(path, run, worker, query)

    def _stream(self, path: Path, run: ContainerRun, worker: Any, query: dict[str, str]) -> None:
        follow = query.get("follow") == "true"
        timestamps = query.get("timestamps") == "true"
        limit = int(query["limitBytes"]) if query.get("limitBytes") else None
        since = None
        if query.get("sinceSeconds"):
            since = (datetime.datetime.now(datetime.timezone.utc)
                     - datetime.timedelta(seconds=int(query["sinceSeconds"]))).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        elif query.get("sinceTime"):
            since = query["sinceTime"]
        lines = path.read_bytes().splitlines(keepends=True)
        offset = sum(len(line) for line in lines)
        if query.get("tailLines"):
            tail = int(query["tailLines"])
            lines = lines[-tail:] if tail > 0 else []

        def render(raw_lines: list[bytes]) -> bytes:
            out = []
            for raw in raw_lines:
                stamp, content = parse_cri_line(raw.rstrip(b"\n"))
                if since and stamp and stamp < since:
                    continue
                out.append((stamp.encode() + b" " if timestamps else b"") + content + b"\n")
            return b"".join(out)

        self.send_response(200)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        sent = 0

        def send(data: bytes) -> bool:
            nonlocal sent
            if limit is not None:
                data = data[: max(limit - sent, 0)]
            if not data:
                return limit is None or sent < limit
            sent += len(data)
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()
            return limit is None or sent < limit

        keep_going = send(render(lines))
        buffer = b""
        while follow and keep_going:
            with open(path, "rb") as stream:
                stream.seek(offset)
                chunk = stream.read()
            if chunk:
                offset += len(chunk)
                buffer += chunk
                complete, _newline, buffer = buffer.rpartition(b"\n")
                if complete:
                    keep_going = send(render((complete + b"\n").splitlines(keepends=True)))
                continue
            if run.process is None and "running" not in run.state:
                break
            readable, _writable, _errored = select.select([self.connection], [], [], 0.3)
            if readable:  # the API server hung up
                break
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()


class LogServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, kubelet: Kubelet, context: ssl.SSLContext):
        super().__init__(("127.0.0.1", 0), LogHandler)
        self.kubelet = kubelet
        self.context = context

    def finish_request(self, request: Any, client_address: Any) -> None:
        try:
            tls = self.context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError):
            request.close()
            return
        self.RequestHandlerClass(tls, client_address, self)


def serve_logs(kubelet: Kubelet) -> int:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(kubelet.certs["kubelet_serving"]["cert"], kubelet.certs["kubelet_serving"]["key"])
    context.load_verify_locations(kubelet.certs["ca"]["cert"])
    context.verify_mode = ssl.CERT_OPTIONAL
    server = LogServer(kubelet, context)
    threading.Thread(target=server.serve_forever, name="kubelet-endpoint", daemon=True).start()
    return server.server_address[1]
