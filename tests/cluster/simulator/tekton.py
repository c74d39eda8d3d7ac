"""Tekton's controllers, reduced to what the collection uses: PipelineRuns create TaskRuns; TaskRuns run their steps.

- A PipelineRun resolves its Pipeline (``pipelineRef`` or ``pipelineSpec``), creates one TaskRun
  ``<run>-<task>`` per pipeline task in ``runAfter``/result order (params substituted, workspaces bound, labels,
  annotations and owner as Tekton sets them), runs ``finally`` tasks, and ends with ``Succeeded`` True/False
  (reasons Succeeded, Failed, CouldntGetPipeline, PipelineRunTimeout, Cancelled) and its results.
- A TaskRun (from a PipelineRun or on its own) runs each step's ``script`` (or command/args) in the step's image
  with buildah, in order, sharing ``/workspace/<name>`` and ``/tekton/results``; a failing step stops the rest.
  A step whose image is buildah's (``quay.io/buildah/stable``, ``.../rhel9/buildah``) cannot nest buildah in a
  chroot here: its script runs with this machine's buildah instead, ``$(workspaces.<w>.path)`` and
  ``$(results.<r>.path)`` pointing at the host directories, buildah's storage a vfs store of its own, so an image
  build pipeline really builds and pushes.
  Status: ``Succeeded`` condition, steps with exit codes, results. Step logs are kept in
  ``STATE/simulator/taskruns/<namespace>/<taskrun>/<step>.log``.
"""

from __future__ import annotations

import json
import logging
import queue
import re
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from .kube import ApiError, Kube, meta, now, scenario, start_informer
from .kubelet import NODE_NAME, RUN_BY_ANNOTATION, ContainerRun, Kubelet
from .runtime import Buildah, Mount, RuntimeFailure, copy_output, kill

LOG = logging.getLogger("simulator.tekton")
PATH = "/apis/tekton.dev/v1"
API_VERSION = "tekton.dev/v1"


def parse_duration(text: str | None) -> float | None:
    """Seconds in a Go duration such as ``1h0m0s`` or ``90s``; None for none or ``0``."""
    if not text:
        return None
    total = 0.0
    for amount, unit in re.findall(r"([\d.]+)(h|ms|m|s)", text):
        total += float(amount) * {"h": 3600, "m": 60, "s": 1, "ms": 0.001}[unit]
    return total or None


def condition_of(obj: dict[str, Any]) -> dict[str, Any]:
    for condition in (obj.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "Succeeded":
            return condition
    return {}


def is_done(obj: dict[str, Any]) -> bool:
    return condition_of(obj).get("status") in ("True", "False")


_VARIABLE = re.compile(r"\$\(([^()]+)\)")


def substitute(text: str, values: dict[str, str]) -> str:
    """Replace ``$(name)`` references Tekton knows (params, context, results, workspaces); others stay as written."""
    def replace(match: re.Match[str]) -> str:
        key = _normalise(match.group(1))
        return values.get(key, match.group(0))

    return _VARIABLE.sub(replace, text)


def _normalise(key: str) -> str:
    # $(params['x']) and $(params["x"]) mean $(params.x)
    return re.sub(r"""\[['"]([^'"]+)['"]\]""", r".\1", key.strip())


def substitute_args(parts: list[str], values: dict[str, str], arrays: dict[str, list[str]]) -> list[str]:
    result: list[str] = []
    for part in parts:
        match = re.fullmatch(r"\$\(([^()]+)\[\*\]\)", part)
        if match and _normalise(match.group(1)) in arrays:
            result.extend(arrays[_normalise(match.group(1))])
        else:
            result.append(substitute(part, values))
    return result


def param_values(declared: list[dict[str, Any]], given: list[dict[str, Any]], prefix: str = "params"
                 ) -> tuple[dict[str, str], dict[str, list[str]]]:
    strings: dict[str, str] = {}
    arrays: dict[str, list[str]] = {}
    values = {p["name"]: p.get("default") for p in declared or [] if "default" in p}
    values.update({p["name"]: p.get("value") for p in given or []})
    for name, value in values.items():
        if isinstance(value, list):
            arrays[f"{prefix}.{name}"] = [str(v) for v in value]
        elif isinstance(value, dict):
            for key, item in value.items():
                strings[f"{prefix}.{name}.{key}"] = str(item)
        elif value is not None:
            strings[f"{prefix}.{name}"] = str(value)
    return strings, arrays


class TaskRunPod:
    """The pod a TaskRun runs in on a real cluster, kept as a record: containers ``step-<name>`` whose statuses
    follow the steps, and whose logs the kubelet endpoint serves, so ``pods/log`` of ``status.podName`` works as
    with Tekton. The pod carries restricted-level security settings (Tekton's set-security-context), so restricted
    namespaces admit it; when admission refuses it anyway the TaskRun still runs, without the record."""

    def __init__(self, kube: Kube, kubelet: Kubelet, run: dict[str, Any], steps: list[dict[str, Any]], directory: Path):
        self.kube = kube
        self.kubelet = kubelet
        metadata = meta(run)
        self.namespace = metadata["namespace"]
        self.name = f"{metadata['name']}-pod"
        self.path = f"/api/v1/namespaces/{self.namespace}/pods/{self.name}"
        self.started = now()
        self.runs: dict[str, ContainerRun] = {}
        containers = []
        for index, step in enumerate(steps):
            step_name = step.get("name") or f"unnamed-{index}"
            container = ContainerRun(f"step-{step_name}", step.get("image", ""))
            container.state = {"waiting": {"reason": "PodInitializing"}}
            container.log_path = directory / f"{step_name}.log"
            self.runs[step_name] = container
            containers.append({
                "name": container.name, "image": container.image, "command": ["/tekton/bin/entrypoint"],
                "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]},
                                    "runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
            })
        self.body = {
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {
                "name": self.name, "namespace": self.namespace,
                "labels": {**(metadata.get("labels") or {}), "tekton.dev/taskRun": metadata["name"],
                           "app.kubernetes.io/managed-by": "tekton-pipelines"},
                "annotations": {RUN_BY_ANNOTATION: "taskrun"},
                "ownerReferences": [{"apiVersion": API_VERSION, "kind": "TaskRun", "name": metadata["name"],
                                     "uid": metadata["uid"], "controller": True, "blockOwnerDeletion": True}],
            },
            "spec": {"nodeName": NODE_NAME, "restartPolicy": "Never", "containers": containers,
                     "serviceAccountName": (run.get("spec") or {}).get("serviceAccountName") or "default",
                     "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}},
        }
        self.created = False

    def create(self) -> bool:
        try:
            self.kube.create(f"/api/v1/namespaces/{self.namespace}/pods", self.body)
            self.created = True
        except ApiError as error:
            LOG.info("TaskRun pod %s/%s not created: %s", self.namespace, self.name, error)
            return False
        self.kubelet.log_sources[(self.namespace, self.name)] = self
        self.report("Running")
        return True

    def find(self, container: str) -> ContainerRun | None:
        return next((run for run in self.runs.values() if run.name == container), None)

    def step(self, step_name: str, state: dict[str, Any], report: bool = True) -> None:
        if step_name in self.runs:
            self.runs[step_name].state = state
            if report:
                self.report("Running")

    def report(self, phase: str) -> None:
        if not self.created:
            return
        status = {
            "phase": phase, "startTime": self.started, "hostIP": "127.0.0.1", "podIP": "127.0.0.1",
            "conditions": [{"type": "PodScheduled", "status": "True", "lastTransitionTime": self.started}],
            "containerStatuses": [run.status() for run in self.runs.values()],
        }
        try:
            self.kube.merge_patch(self.path + "/status", {"status": status})
        except ApiError as error:
            LOG.info("TaskRun pod %s/%s status: %s", self.namespace, self.name, error)


class TaskRunController:
    def __init__(self, kube: Kube, runtime: Buildah, state_dir: Path, claims_dir: Path, stop: threading.Event,
                 kubelet: Kubelet):
        self.kubelet = kubelet
        self.kube = kube
        self.runtime = runtime
        self.state_dir = state_dir
        self.claims_dir = claims_dir
        self.stop = stop
        self.queue: "queue.Queue[tuple[str, str, str]]" = queue.Queue()
        self.seen: set[str] = set()
        self.lock = threading.Lock()

    def start(self) -> None:
        threading.Thread(target=self._work, name="taskruns", daemon=True).start()
        start_informer(self.kube, f"{PATH}/taskruns", self.on_event, self.stop, name="taskruns")

    def on_event(self, event: str, run: dict[str, Any]) -> None:
        if event == "DELETED" or is_done(run):
            return
        metadata = meta(run)
        with self.lock:
            if metadata["uid"] in self.seen:
                return
            self.seen.add(metadata["uid"])
        self.queue.put((metadata["namespace"], metadata["name"], metadata["uid"]))

    def _work(self) -> None:
        while not self.stop.is_set():
            try:
                namespace, name, uid = self.queue.get(timeout=1.0)
            except queue.Empty:
                continue
            run = self.kube.get(f"{PATH}/namespaces/{namespace}/taskruns/{name}")
            if run is None or meta(run)["uid"] != uid:
                continue
            try:
                self.execute(run)
            except Exception as error:
                LOG.exception("taskrun %s/%s", namespace, name)
                self._status(run, {"conditions": [_condition("False", "TaskRunError", str(error))], "completionTime": now()})

    def _status(self, run: dict[str, Any], status: dict[str, Any]) -> None:
        metadata = meta(run)
        try:
            self.kube.merge_patch(f"{PATH}/namespaces/{metadata['namespace']}/taskruns/{metadata['name']}/status",
                                  {"status": status})
        except ApiError as error:
            if error.code != 404:
                raise

    def _task_spec(self, run: dict[str, Any]) -> dict[str, Any] | None:
        spec = run.get("spec") or {}
        if spec.get("taskSpec"):
            return spec["taskSpec"]
        name = (spec.get("taskRef") or {}).get("name")
        task = self.kube.get(f"{PATH}/namespaces/{meta(run)['namespace']}/tasks/{name}") if name else None
        return (task or {}).get("spec")

    def execute(self, run: dict[str, Any]) -> None:
        metadata = meta(run)
        namespace, name = metadata["namespace"], metadata["name"]
        spec = run.get("spec") or {}
        started = now()
        task_spec = self._task_spec(run)
        if task_spec is None:
            self._status(run, {"startTime": started, "completionTime": now(), "conditions": [_condition(
                "False", "TaskRunResolutionFailed",
                f"error requesting remote resource: tasks.tekton.dev \"{(spec.get('taskRef') or {}).get('name')}\" not found")]})
            return
        self._status(run, {"startTime": started, "podName": f"{name}-pod", "taskSpec": task_spec,
                           "conditions": [_condition("Unknown", "Running", "Not all Steps in the Task have finished executing")]})
        timeout = parse_duration(spec.get("timeout") or "1h")
        deadline = time.monotonic() + timeout if timeout else None
        directory = self.state_dir / "taskruns" / namespace / name
        shutil.rmtree(directory, ignore_errors=True)
        (directory / "results").mkdir(parents=True)
        (directory / "scripts").mkdir()
        (directory / "home").mkdir()
        for sub in ("results", "home"):
            (directory / sub).chmod(0o777)
        strings, arrays = param_values(task_spec.get("params") or [], spec.get("params") or [])
        strings.update({"context.taskRun.name": name, "context.taskRun.namespace": namespace,
                        "context.taskRun.uid": metadata["uid"], "context.task.name": (spec.get("taskRef") or {}).get("name", name)})
        mounts = [Mount(str(directory / "results"), "/tekton/results"), Mount(str(directory / "scripts"), "/tekton/scripts", True),
                  Mount(str(directory / "home"), "/tekton/home")]
        bindings = {binding["name"]: binding for binding in spec.get("workspaces") or []}
        for workspace in task_spec.get("workspaces") or []:
            path = workspace.get("mountPath") or f"/workspace/{workspace['name']}"
            host = self._workspace_dir(namespace, directory, bindings.get(workspace["name"]), workspace["name"])
            if host is None:
                if workspace.get("optional"):
                    continue
                self._status(run, {"completionTime": now(), "conditions": [_condition(
                    "False", "TaskRunValidationFailed", f"workspace {workspace['name']!r} is not bound")]})
                return
            mounts.append(Mount(str(host), path, bool(workspace.get("readOnly"))))
            strings[f"workspaces.{workspace['name']}.path"] = path
            strings[f"workspaces.{workspace['name']}.bound"] = "true"
        for result in task_spec.get("results") or []:
            strings[f"results.{result['name']}.path"] = f"/tekton/results/{result['name']}"
        # The same variables for steps that run on this machine (buildah steps): host directories.
        host_strings = dict(strings)
        for mount in mounts:
            for key, value in strings.items():
                if key.startswith(("workspaces.", "results.")) and key.endswith(".path") and \
                        (value == mount.container_path or value.startswith(mount.container_path + "/")):
                    host_strings[key] = mount.host_path + value[len(mount.container_path):]
        steps_status: list[dict[str, Any]] = []
        failure: tuple[str, str] | None = None
        hook = scenario(run)
        pod = TaskRunPod(self.kube, self.kubelet, run, task_spec.get("steps") or [], directory)
        pod.create()
        for index, step in enumerate(task_spec.get("steps") or []):
            step_name = step.get("name") or f"unnamed-{index}"
            if failure is not None:
                steps_status.append({"name": step_name, "container": f"step-{step_name}",
                                     "terminated": {"exitCode": 1, "reason": "Skipped", "startedAt": now(), "finishedAt": now()}})
                continue
            if hook == "fail":
                failure = ("Failed", f'"step-{step_name}" exited with code 1 (simulated: sim.mlops.test/scenario=fail)')
                steps_status.append({"name": step_name, "container": f"step-{step_name}",
                                     "terminated": {"exitCode": 1, "reason": "Error", "startedAt": now(), "finishedAt": now()}})
                continue
            if hook == "hang":
                while not self.stop.wait(0.5):
                    if self._cancelled(run) or (deadline and time.monotonic() > deadline):
                        break
            pod.step(step_name, {"running": {"startedAt": now()}})
            if is_buildah_image(substitute(step.get("image", ""), strings)):
                outcome = self._run_host_step(run, step, step_name, host_strings, arrays, directory, deadline)
            else:
                outcome = self._run_step(run, step, step_name, strings, arrays, mounts, directory, deadline)
            steps_status.append(outcome["status"])
            pod.step(step_name, {"terminated": outcome["status"]["terminated"]})
            if outcome["failure"]:
                failure = outcome["failure"]
            self._status(run, {"steps": steps_status})
        results = []
        for result in task_spec.get("results") or []:
            path = directory / "results" / result["name"]
            if path.exists():
                results.append({"name": result["name"], "type": result.get("type", "string"),
                                "value": path.read_text().rstrip("\n") if result.get("type", "string") == "string"
                                else json.loads(path.read_text())})
        for status in steps_status:
            pod.step(status["name"], {"terminated": status["terminated"]}, report=False)
        pod.report("Succeeded" if failure is None else "Failed")
        if failure is None:
            condition = _condition("True", "Succeeded", "All Steps have completed executing")
        else:
            condition = _condition("False", failure[0], failure[1])
        self._status(run, {"completionTime": now(), "steps": steps_status, "results": results, "conditions": [condition]})

    def _cancelled(self, run: dict[str, Any]) -> bool:
        metadata = meta(run)
        current = self.kube.get(f"{PATH}/namespaces/{metadata['namespace']}/taskruns/{metadata['name']}")
        return current is None or (current.get("spec") or {}).get("status") == "TaskRunCancelled"

    def _workspace_dir(self, namespace: str, directory: Path, binding: dict[str, Any] | None, name: str) -> Path | None:
        if binding is None:
            return None
        if "persistentVolumeClaim" in binding:
            host = self.claims_dir / namespace / binding["persistentVolumeClaim"]["claimName"]
        else:  # emptyDir, and the simulator's stand-in for ConfigMap/Secret bindings is an empty directory too
            host = directory / "workspaces" / name
        host = host / binding["subPath"] if binding.get("subPath") else host
        host.mkdir(parents=True, exist_ok=True)
        host.chmod(0o777)
        return host

    def _run_step(self, run: dict[str, Any], step: dict[str, Any], step_name: str, strings: dict[str, str],
                  arrays: dict[str, list[str]], mounts: list[Mount], directory: Path, deadline: float | None) -> dict[str, Any]:
        container_name = f"step-{step_name}"
        image = substitute(step.get("image", ""), strings)
        env = {entry["name"]: substitute(str(entry.get("value", "")), strings) for entry in step.get("env") or []}
        env.setdefault("HOME", "/tekton/home")
        if step.get("script"):
            script = substitute(step["script"], strings)
            if not script.startswith("#!"):
                script = "#!/bin/sh\nset -e\n" + script
            script_path = directory / "scripts" / container_name
            script_path.write_text(script)
            script_path.chmod(0o755)
            argv = [f"/tekton/scripts/{container_name}"]
        else:
            argv = substitute_args(list(step.get("command") or []) + list(step.get("args") or []), strings, arrays)
        started = now()
        log_path = directory / f"{step_name}.log"
        container = ""
        try:
            working_name = self.runtime.container_name("step", f"{meta(run)['uid'][:8]}-{step_name}")
            self.runtime.run("rm", working_name, timeout=60)  # a leftover of an interrupted earlier run
            container = self.runtime.from_image(image, working_name)
            security = step.get("securityContext") or {}
            user = str(security["runAsUser"]) if "runAsUser" in security else None
            process = self.runtime.start(container, argv, env, mounts, user, step.get("workingDir") or None)
            watcher = threading.Thread(target=self._watch_step, args=(run, process, deadline), daemon=True)
            watcher.start()
            with open(log_path, "ab") as log:
                copy_output(process, log)
            exit_code = process.wait()
        except RuntimeFailure as error:
            return {"status": {"name": step_name, "container": container_name, "terminated": {
                "exitCode": 1, "reason": error.reason, "message": str(error), "startedAt": started, "finishedAt": now()}},
                "failure": ("Failed", str(error))}
        finally:
            if container:
                self.runtime.remove(container)
        status = {"name": step_name, "container": container_name, "imageID": image, "terminated": {
            "exitCode": exit_code, "reason": "Completed" if exit_code == 0 else "Error", "startedAt": started,
            "finishedAt": now()}}
        failure = None
        if deadline and time.monotonic() > deadline:
            failure = ("TaskRunTimeout", f'TaskRun "{meta(run)["name"]}" failed to finish within '
                       f'"{(run.get("spec") or {}).get("timeout", "1h0m0s")}"')
        elif exit_code != 0:
            failure = ("Failed", f'"{container_name}" exited with code {exit_code}')
            if self._cancelled(run):
                failure = ("TaskRunCancelled", f'TaskRun "{meta(run)["name"]}" was cancelled')
        return {"status": status, "failure": failure}

    def _run_host_step(self, run: dict[str, Any], step: dict[str, Any], step_name: str, strings: dict[str, str],
                       arrays: dict[str, list[str]], directory: Path, deadline: float | None) -> dict[str, Any]:
        """A buildah step: buildah cannot run inside a chroot-isolated container here, so the step's script runs
        with this machine's buildah, its path variables pointing at the host directories of its workspaces and
        results, and buildah's storage a vfs store of the simulator's."""
        container_name = f"step-{step_name}"
        storage_conf = directory / "storage.conf"
        # A vfs store of its own: Tekton's buildah tasks pass --storage-driver=vfs (their default).
        store = self.runtime.root.parent / "simulator-storage-steps"
        storage_conf.write_text(f'[storage]\ndriver = "vfs"\nrunroot = "{store}-run"\ngraphroot = "{store}"\n')
        env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": str(directory / "home"),
               "CONTAINERS_STORAGE_CONF": str(storage_conf), "STORAGE_DRIVER": "vfs", "BUILDAH_ISOLATION": "chroot"}
        env.update({entry["name"]: substitute(str(entry.get("value", "")), strings) for entry in step.get("env") or []})
        if step.get("script"):
            script = substitute(step["script"], strings)
            if not script.startswith("#!"):
                script = "#!/bin/sh\nset -e\n" + script
            script_path = directory / "scripts" / f"host-{container_name}"
            script_path.write_text(script)
            script_path.chmod(0o755)
            argv = [str(script_path)]
        else:
            argv = substitute_args(list(step.get("command") or []) + list(step.get("args") or []), strings, arrays)
        workdir = substitute(step.get("workingDir") or "", strings) or str(directory / "home")
        started = now()
        try:
            process = subprocess.Popen(argv, cwd=workdir if Path(workdir).is_dir() else str(directory / "home"), env=env,
                                       stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                       start_new_session=True)
        except OSError as error:
            return {"status": {"name": step_name, "container": container_name, "terminated": {
                "exitCode": 1, "reason": "Error", "message": str(error), "startedAt": started, "finishedAt": now()}},
                "failure": ("Failed", f'"{container_name}" could not start: {error}')}
        threading.Thread(target=self._watch_step, args=(run, process, deadline), daemon=True).start()
        with open(directory / f"{step_name}.log", "ab") as log:
            copy_output(process, log)
        exit_code = process.wait()
        status = {"name": step_name, "container": container_name, "imageID": substitute(step.get("image", ""), strings),
                  "terminated": {"exitCode": exit_code, "reason": "Completed" if exit_code == 0 else "Error",
                                 "startedAt": started, "finishedAt": now()}}
        failure = None if exit_code == 0 else ("Failed", f'"{container_name}" exited with code {exit_code}')
        return {"status": status, "failure": failure}

    def _watch_step(self, run: dict[str, Any], process: Any, deadline: float | None) -> None:
        while process.poll() is None:
            if deadline and time.monotonic() > deadline:
                kill(process, 5)
                return
            if self.stop.wait(1.0) or self._cancelled(run):
                kill(process, 5)
                return


def is_buildah_image(image: str) -> bool:
    """quay.io/buildah/stable, registry.redhat.io/rhel9/buildah and the like."""
    repository = image.split("@")[0].rsplit("/", 1)[-1].split(":")[0]
    path = image.split("@")[0].rsplit(":", 1)[0] if ":" in image.rsplit("/", 1)[-1] else image.split("@")[0]
    return repository == "buildah" or "/buildah/" in path + "/"


def _condition(status: str, reason: str, message: str) -> dict[str, Any]:
    return {"type": "Succeeded", "status": status, "reason": reason, "message": message, "lastTransitionTime": now()}


class PipelineRunController:
    def __init__(self, kube: Kube, stop: threading.Event):
        self.kube = kube
        self.stop = stop
        self.seen: set[str] = set()
        self.lock = threading.Lock()

    def start(self) -> None:
        start_informer(self.kube, f"{PATH}/pipelineruns", self.on_event, self.stop, name="pipelineruns")

    def on_event(self, event: str, run: dict[str, Any]) -> None:
        if event == "DELETED" or is_done(run):
            return
        with self.lock:
            if meta(run)["uid"] in self.seen:
                return
            self.seen.add(meta(run)["uid"])
        threading.Thread(target=self._guarded, args=(run,), name=f"pipelinerun-{meta(run)['name']}", daemon=True).start()

    def _path(self, run: dict[str, Any]) -> str:
        return f"{PATH}/namespaces/{meta(run)['namespace']}/pipelineruns/{meta(run)['name']}"

    def _status(self, run: dict[str, Any], status: dict[str, Any]) -> None:
        try:
            self.kube.merge_patch(self._path(run) + "/status", {"status": status})
        except ApiError as error:
            if error.code != 404:
                raise

    def _guarded(self, run: dict[str, Any]) -> None:
        try:
            self.execute(run)
        except Exception as error:
            LOG.exception("pipelinerun %s", meta(run).get("name"))
            self._status(run, {"completionTime": now(), "conditions": [_condition("False", "PipelineRunError", str(error))]})

    def execute(self, run: dict[str, Any]) -> None:
        metadata = meta(run)
        namespace, name = metadata["namespace"], metadata["name"]
        spec = run.get("spec") or {}
        started = now()
        pipeline_spec = spec.get("pipelineSpec")
        pipeline_name = (spec.get("pipelineRef") or {}).get("name", "")
        if pipeline_spec is None:
            pipeline = self.kube.get(f"{PATH}/namespaces/{namespace}/pipelines/{pipeline_name}") if pipeline_name else None
            if pipeline is None:
                self._status(run, {"startTime": started, "completionTime": now(), "conditions": [_condition(
                    "False", "CouldntGetPipeline",
                    f"Error retrieving pipeline for pipelinerun {namespace}/{name}: pipelines.tekton.dev "
                    f"\"{pipeline_name}\" not found")]})
                return
            pipeline_spec = pipeline.get("spec") or {}
        tasks = list(pipeline_spec.get("tasks") or [])
        finally_tasks = list(pipeline_spec.get("finally") or [])
        strings, arrays = param_values(pipeline_spec.get("params") or [], spec.get("params") or [])
        strings.update({"context.pipelineRun.name": name, "context.pipelineRun.namespace": namespace,
                        "context.pipelineRun.uid": metadata["uid"], "context.pipeline.name": pipeline_name or name})
        timeout = parse_duration((spec.get("timeouts") or {}).get("pipeline") or "1h")
        deadline = time.monotonic() + timeout if timeout else None
        children: list[dict[str, Any]] = []
        outcome: dict[str, str] = {}  # pipeline task name -> Succeeded | Failed | Skipped

        def report(condition: dict[str, Any], extra: dict[str, Any] | None = None) -> None:
            self._status(run, {"startTime": started, "pipelineSpec": pipeline_spec, "childReferences": children,
                               "conditions": [condition], **(extra or {})})

        def counts() -> str:
            done = sum(1 for v in outcome.values() if v in ("Succeeded", "Failed"))
            failed = sum(1 for v in outcome.values() if v == "Failed")
            skipped = sum(1 for v in outcome.values() if v == "Skipped")
            return f"Tasks Completed: {done} (Failed: {failed}, Cancelled 0), Skipped: {skipped}"

        report(_condition("Unknown", "Running", "Tasks Completed: 0 (Failed: 0, Cancelled 0), Skipped: 0"))
        stop_reason: tuple[str, str] | None = None
        if scenario(run) == "hang":
            while not self.stop.wait(0.5):
                stop_reason = self._stop_reason(run, deadline)
                if stop_reason:
                    break
        pending = list(tasks)
        while pending and stop_reason is None:
            ready = [task for task in pending if all(outcome.get(dep) == "Succeeded" for dep in _dependencies(task))]
            if not ready or any(v == "Failed" for v in outcome.values()):
                break
            for task in ready:
                pending.remove(task)
                stop_reason = self._run_task(run, task, strings, arrays, spec, children, outcome, deadline, report, counts)
                if stop_reason or outcome[task["name"]] == "Failed":
                    break
        for task in pending:
            outcome[task["name"]] = "Skipped"
        for task in finally_tasks:
            if stop_reason and stop_reason[0] == "Cancelled":
                outcome[task["name"]] = "Skipped"
                continue
            self._run_task(run, task, strings, arrays, spec, children, outcome, None, report, counts)
        results = []
        for result in pipeline_spec.get("results") or []:
            value = substitute(str(result.get("value", "")), strings)
            if "$(" not in value:
                results.append({"name": result["name"], "value": value})
        if stop_reason:
            condition = _condition("False", stop_reason[0], stop_reason[1])
        elif any(v == "Failed" for v in outcome.values()):
            condition = _condition("False", "Failed", counts())
        else:
            condition = _condition("True", "Succeeded", counts())
        report(condition, {"completionTime": now(), "results": results})

    def _stop_reason(self, run: dict[str, Any], deadline: float | None) -> tuple[str, str] | None:
        current = self.kube.get(self._path(run))
        name = meta(run)["name"]
        if current is None or (current.get("spec") or {}).get("status") in ("Cancelled", "CancelledRunFinally", "StoppedRunFinally"):
            return ("Cancelled", f'PipelineRun "{name}" was cancelled')
        if deadline and time.monotonic() > deadline:
            timeout = ((run.get("spec") or {}).get("timeouts") or {}).get("pipeline", "1h0m0s")
            return ("PipelineRunTimeout", f'PipelineRun "{name}" failed to finish within "{timeout}"')
        return None

    def _run_task(self, run: dict[str, Any], task: dict[str, Any], strings: dict[str, str], arrays: dict[str, list[str]],
                  spec: dict[str, Any], children: list[dict[str, Any]], outcome: dict[str, str], deadline: float | None,
                  report: Any, counts: Any) -> tuple[str, str] | None:
        metadata = meta(run)
        namespace, name = metadata["namespace"], metadata["name"]
        task_run_name = f"{name}-{task['name']}"[:63].rstrip("-")
        bindings = {b["name"]: b for b in spec.get("workspaces") or []}
        workspaces = []
        for workspace in task.get("workspaces") or []:
            binding = dict(bindings.get(workspace.get("workspace") or workspace["name"]) or {})
            if not binding:
                continue
            if "volumeClaimTemplate" in binding:  # Tekton makes one PVC per run; its directory stands in for it
                binding = {"persistentVolumeClaim": {"claimName": f"pvc-{name}-{binding['name']}"}}
            binding.pop("name", None)
            if workspace.get("subPath"):
                binding["subPath"] = workspace["subPath"]
            workspaces.append({"name": workspace["name"], **binding})
        params = []
        for param in task.get("params") or []:
            value = param.get("value")
            if isinstance(value, str):
                match = re.fullmatch(r"\$\(([^()]+)\[\*\]\)", value)
                value = arrays.get(_normalise(match.group(1)), value) if match else substitute(value, strings)
            elif isinstance(value, list):
                value = substitute_args([str(v) for v in value], strings, arrays)
            params.append({"name": param["name"], "value": value})
        labels = dict(metadata.get("labels") or {})
        labels.update({"tekton.dev/pipelineRun": name, "tekton.dev/pipelineTask": task["name"],
                       "tekton.dev/pipeline": (spec.get("pipelineRef") or {}).get("name", name)})
        task_run_spec: dict[str, Any] = {"params": params, "workspaces": workspaces,
                                         "serviceAccountName": (spec.get("taskRunTemplate") or {}).get("serviceAccountName", "default")}
        if task.get("taskSpec"):
            task_run_spec["taskSpec"] = task["taskSpec"]
        else:
            task_run_spec["taskRef"] = {"name": (task.get("taskRef") or {}).get("name"), "kind": "Task"}
        if task.get("timeout"):
            task_run_spec["timeout"] = task["timeout"]
        body = {
            "apiVersion": API_VERSION, "kind": "TaskRun",
            "metadata": {"name": task_run_name, "namespace": namespace, "labels": labels,
                         "annotations": dict(metadata.get("annotations") or {}),
                         "ownerReferences": [{"apiVersion": API_VERSION, "kind": "PipelineRun", "name": name,
                                              "uid": metadata["uid"], "controller": True, "blockOwnerDeletion": True}]},
            "spec": task_run_spec,
        }
        try:
            self.kube.create(f"{PATH}/namespaces/{namespace}/taskruns", body)
        except ApiError as error:
            if error.code != 409:
                raise
        children.append({"apiVersion": API_VERSION, "kind": "TaskRun", "name": task_run_name, "pipelineTaskName": task["name"]})
        report(_condition("Unknown", "Running", counts()))
        path = f"{PATH}/namespaces/{namespace}/taskruns/{task_run_name}"
        while not self.stop.is_set():
            task_run = self.kube.get(path)
            if task_run is None:
                outcome[task["name"]] = "Failed"
                return None
            if is_done(task_run):
                succeeded = condition_of(task_run).get("status") == "True"
                outcome[task["name"]] = "Succeeded" if succeeded else "Failed"
                for result in (task_run.get("status") or {}).get("results") or []:
                    value = result.get("value")
                    strings[f"tasks.{task['name']}.results.{result['name']}"] = value if isinstance(value, str) else json.dumps(value)
                return None
            reason = self._stop_reason(run, deadline)
            if reason:
                try:
                    self.kube.merge_patch(path, {"spec": {"status": "TaskRunCancelled"}})
                except ApiError:
                    pass
                outcome[task["name"]] = "Failed"
                return reason
            self.stop.wait(1.0)
        return ("Cancelled", "the simulator stopped")


def _dependencies(task: dict[str, Any]) -> set[str]:
    dependencies = set(task.get("runAfter") or [])
    text = json.dumps(task.get("params") or [])
    dependencies.update(re.findall(r"\$\(tasks\.([a-z0-9-]+)\.results\.", text))
    return dependencies
