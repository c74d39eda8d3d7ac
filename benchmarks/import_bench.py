"""Benchmark: a no-op re-run of nbimage_import beside community.okd.openshift_import_image, in one run.

Run from the repository root with the project's virtual environment::

    .venv/bin/python benchmarks/import_bench.py [--repeat R] [--kubeconfig PATH --image REF] [--output PATH]

Without ``--kubeconfig`` it starts its own local control plane (tests/cluster, with the registry and the cached
test images) and imports ``<registry>/testimages/notebook:latest``; with ``--kubeconfig`` it uses that cluster
(for example a real OpenShift) and ``--image``.

Both modules run through ``ansible-playbook`` against the same cluster and image, each into its own ImageStream:
one warm-up run that does the real work (import, and for nbimage_import the validation pod), then ``R`` re-runs
with the same inputs, alternating the two modules so background load falls on both alike.

**How requests are counted.** Every Python process started for the runs gets a ``sitecustomize`` (through
``PYTHONPATH``) that wraps urllib3's ``HTTPConnectionPool.urlopen``, the one place every request of the
kubernetes client passes (discovery included; a retry counts again, as it reaches the server again), and writes
the method and path of each request to the API server, with the module process's own start and end time, to a
JSON-lines file when the process exits. This needs no change to the API server (its audit log would need flags the
control plane does not set, and would not work on a cluster one does not administer), and it counts exactly what
the module sends. Both modules share kubernetes.core's discovery cache file, warmed by the warm-up runs.

Reported per module (medians over the re-runs): API requests, ansible-playbook wall seconds, module process
seconds (from interpreter start to exit), and the re-run's ``changed``/``failed``. Timings are measured, never
asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, Optional

ROOT = Path(__file__).resolve().parents[1]
CLUSTER_DIR = ROOT / "tests" / "cluster"
DEV_COLLECTIONS = ROOT / "build" / "dev"
DEFAULT_OUTPUT = ROOT / "benchmarks" / "results" / "import_bench.json"
RESULT_SCHEMA_VERSION = 1
MODULES = ("nbimage_import", "openshift_import_image")
RUN_TIMEOUT_SECONDS = 900

SITECUSTOMIZE = r'''
"""Benchmark hook (benchmarks/import_bench.py): records every HTTP request of this process."""
import atexit
import json
import os
import sys
import time

_LOG = os.environ.get("MLOPS_BENCH_REQUEST_LOG")
if _LOG:
    _STARTED = time.time()
    _REQUESTS = []
    try:
        import urllib3.connectionpool as _pool

        _original = _pool.HTTPConnectionPool.urlopen

        def _counting_urlopen(self, method, url, *args, **kwargs):
            _REQUESTS.append({"at": round(time.time() - _STARTED, 4), "method": method,
                              "path": url.split("?")[0], "server": "%s:%s" % (self.host, self.port)})
            return _original(self, method, url, *args, **kwargs)

        _pool.HTTPConnectionPool.urlopen = _counting_urlopen
    except ImportError:
        pass

    @atexit.register
    def _write_record():
        if not _REQUESTS:
            return
        with open(_LOG, "a") as handle:
            handle.write(json.dumps({"pid": os.getpid(), "started": _STARTED, "ended": time.time(),
                                     "requests": _REQUESTS}) + "\n")
'''


def log(message: str) -> None:
    print(f"[import_bench] {message}", file=sys.stderr, flush=True)


def playbook(module: str, args: dict[str, Any]) -> list[dict[str, Any]]:
    return [{
        "name": f"benchmark {module}", "hosts": "localhost", "connection": "local", "gather_facts": False,
        "vars": {"ansible_python_interpreter": "{{ ansible_playbook_python }}"},
        "tasks": [{"name": "import", module: args, "ignore_errors": True}],
    }]


def module_args(module: str, namespace: str, image: str, insecure: bool) -> tuple[str, dict[str, Any]]:
    """The task of each module importing ``image`` into its own ImageStream."""
    if module == "nbimage_import":
        return "mlops.notebooks.nbimage_import", {"namespace": namespace, "name": "bench-nbimage-import",
                                                  "from_image": image, "insecure": insecure}
    return "community.okd.openshift_import_image", {"namespace": namespace, "name": "bench-okd-import",
                                                    "source": image, "validate_registry_certs": not insecure}


def run_once(module: str, namespace: str, image: str, insecure: bool, kubeconfig: Path, work_dir: Path,
             label: str) -> dict[str, Any]:
    """One ansible-playbook run of ``module``: wall time, the module process's requests and time, its result."""
    import yaml

    fqcn, args = module_args(module, namespace, image, insecure)
    path = work_dir / f"{label}.yml"
    path.write_text(yaml.safe_dump(playbook(fqcn, args), sort_keys=False))
    request_log = work_dir / f"{label}.requests.jsonl"
    env = dict(os.environ)
    env.update({
        "ANSIBLE_COLLECTIONS_PATH": str(DEV_COLLECTIONS),
        "ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json",
        "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
        "ANSIBLE_NOCOLOR": "1",
        "K8S_AUTH_KUBECONFIG": str(kubeconfig),
        "MLOPS_BENCH_REQUEST_LOG": str(request_log),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(work_dir / "hook"), env.get("PYTHONPATH", "")])),
        "PATH": str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", ""),
    })
    started = time.monotonic()
    completed = subprocess.run([str(Path(sys.executable).parent / "ansible-playbook"), str(path)], capture_output=True,
                               text=True, env=env, cwd=str(ROOT), timeout=RUN_TIMEOUT_SECONDS, check=False,
                               stdin=subprocess.DEVNULL)
    wall = time.monotonic() - started
    try:
        output = json.loads(completed.stdout)
        result = output["plays"][0]["tasks"][0]["hosts"]["localhost"]
    except (ValueError, KeyError, IndexError) as error:
        raise RuntimeError(f"{module}: ansible-playbook printed no result ({error}); stderr: {completed.stderr[-2000:]}")
    records = [json.loads(line) for line in request_log.read_text().splitlines()] if request_log.exists() else []
    server = kubernetes_server(kubeconfig)
    requests = [request for record in records for request in record["requests"] if request["server"] == server]
    module_seconds = max((record["ended"] - record["started"] for record in records), default=None)
    return {
        "module": module,
        "wall_seconds": round(wall, 3),
        "module_seconds": round(module_seconds, 3) if module_seconds is not None else None,
        "api_requests": len(requests),
        "requests": [f"{request['method']} {request['path']}" for request in requests],
        "changed": bool(result.get("changed")),
        "failed": bool(result.get("failed")),
        "msg": (result.get("msg") or "")[:400] if result.get("failed") else "",
    }


def kubernetes_server(kubeconfig: Path) -> str:
    """``host:port`` of the kubeconfig's current cluster, as urllib3 names the connection."""
    import yaml
    from urllib.parse import urlparse

    config = yaml.safe_load(kubeconfig.read_text())
    contexts = {entry["name"]: entry["context"] for entry in config.get("contexts") or []}
    clusters = {entry["name"]: entry["cluster"] for entry in config.get("clusters") or []}
    server = urlparse(clusters[contexts[config["current-context"]]["cluster"]]["server"])
    return f"{server.hostname}:{server.port or (443 if server.scheme == 'https' else 80)}"


def create_namespace(kubeconfig: Path) -> str:
    from kubernetes import client, config

    name = f"import-bench-{uuid.uuid4().hex[:6]}"
    with config.new_client_from_config(config_file=str(kubeconfig)) as api:
        client.CoreV1Api(api).create_namespace({"metadata": {"name": name}})
        deadline = time.monotonic() + 60
        while True:  # pods are admitted only once the namespace's default ServiceAccount exists
            try:
                client.CoreV1Api(api).read_namespaced_service_account("default", name)
                break
            except client.exceptions.ApiException:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.3)
    return name


def delete_namespace(kubeconfig: Path, name: str) -> None:
    from kubernetes import client, config

    with config.new_client_from_config(config_file=str(kubeconfig)) as api:
        client.CoreV1Api(api).delete_namespace(name)


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    def median(key: str) -> Optional[float]:
        values = [run[key] for run in runs if run[key] is not None]
        return round(statistics.median(values), 3) if values else None

    return {
        "reruns": len(runs),
        "api_requests_median": median("api_requests"),
        "api_requests_each": [run["api_requests"] for run in runs],
        "wall_seconds_median": median("wall_seconds"),
        "module_seconds_median": median("module_seconds"),
        "changed_each": [run["changed"] for run in runs],
        "failed_each": [run["failed"] for run in runs],
        "requests_of_a_rerun": runs[-1]["requests"] if runs else [],
        "failure": next((run["msg"] for run in runs if run["failed"]), ""),
    }


def versions() -> dict[str, str]:
    from importlib import metadata

    found = {"python": platform.python_version(), "machine": platform.machine(), "cpus": str(os.cpu_count())}
    for package in ("ansible-core", "kubernetes", "urllib3"):
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = "absent"
    for collection in ("kubernetes/core", "community/okd"):
        manifest = Path(sys.prefix) / "lib" / f"python{sys.version_info[0]}.{sys.version_info[1]}" / "site-packages" / \
            "ansible_collections" / collection / "MANIFEST.json"
        try:
            found[collection.replace("/", ".")] = json.loads(manifest.read_text())["collection_info"]["version"]
        except (OSError, ValueError, KeyError):
            found[collection.replace("/", ".")] = "unknown"
    return found


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--repeat", type=int, default=5, help="re-runs per module (default 5)")
    parser.add_argument("--kubeconfig", type=Path, help="an existing cluster (default: start a local control plane)")
    parser.add_argument("--image", help="the image to import (default: the local registry's test notebook image)")
    parser.add_argument("--secure", action="store_true", help="the registry uses TLS (default: plain HTTP, insecure)")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    options = parser.parse_args(argv)

    link = DEV_COLLECTIONS / "ansible_collections" / "mlops" / "notebooks"
    if not link.exists():
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(ROOT)
    state_dir: Optional[Path] = None
    if options.kubeconfig:
        kubeconfig = options.kubeconfig.resolve()
        if not options.image:
            parser.error("--image is required with --kubeconfig")
        image = options.image
    else:
        sys.path.insert(0, str(CLUSTER_DIR))
        import controlplane

        state_dir = ROOT / "build" / f"cluster-import-bench-{os.getpid()}"
        log(f"starting a local control plane in {state_dir}")
        plane = controlplane.up(state_dir)
        kubeconfig = plane.kubeconfig
        if not plane.registry:
            controlplane.down(state_dir)
            raise SystemExit("the local control plane has no registry with test images (scripts/bootstrap.sh images)")
        image = options.image or f"{plane.registry}/testimages/notebook:latest"
    work_dir = Path(tempfile.mkdtemp(prefix="import-bench-"))
    (work_dir / "hook").mkdir()
    (work_dir / "hook" / "sitecustomize.py").write_text(SITECUSTOMIZE)
    namespace = create_namespace(kubeconfig)
    insecure = not options.secure
    try:
        warmup = {}
        for module in MODULES:
            log(f"warm-up run of {module} (the real import)")
            warmup[module] = run_once(module, namespace, image, insecure, kubeconfig, work_dir, f"{module}-warmup")
        reruns: dict[str, list[dict[str, Any]]] = {module: [] for module in MODULES}
        for repetition in range(options.repeat):
            order = MODULES if repetition % 2 == 0 else tuple(reversed(MODULES))
            for module in order:
                reruns[module].append(run_once(module, namespace, image, insecure, kubeconfig, work_dir,
                                               f"{module}-rerun-{repetition}"))
        report = {
            "schema_version": RESULT_SCHEMA_VERSION,
            "benchmark": "import_bench",
            "image": image,
            "cluster": "local control plane (tests/cluster)" if state_dir else str(kubeconfig),
            "versions": versions(),
            "warmup": warmup,
            "summary": {module: summarize(reruns[module]) for module in MODULES},
            "reruns": reruns,
        }
    finally:
        delete_namespace(kubeconfig, namespace)
        shutil.rmtree(work_dir, ignore_errors=True)
        if state_dir is not None:
            import controlplane

            controlplane.down(state_dir)
    failing = [module for module in MODULES if any(report["summary"][module]["failed_each"])]
    # a module whose re-runs failed did not do the same work: its figures are no basis for a ratio
    report["comparable"] = not failing
    report["not_comparable_because"] = [
        f"{module} failed: {report['summary'][module]['failure']}" for module in failing
    ]
    options.output.parent.mkdir(parents=True, exist_ok=True)
    options.output.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nNo-op re-run of the same import ({options.repeat} re-runs each, medians; {image})")
    print(f"{'module':<26}{'API requests':>14}{'wall s':>10}{'module s':>10}  changed/failed")
    for module in MODULES:
        summary = report["summary"][module]
        print(f"{module:<26}{summary['api_requests_median']!s:>14}{summary['wall_seconds_median']!s:>10}"
              f"{summary['module_seconds_median']!s:>10}  {summary['changed_each']}/{summary['failed_each']}")
        if summary["failure"]:
            print(f"  {module} failed: {summary['failure']}")
    for module in MODULES:
        print(f"requests of one {module} re-run: {', '.join(report['summary'][module]['requests_of_a_rerun']) or 'none'}")
    if failing:
        print(f"NOT COMPARABLE: {', '.join(failing)} failed its runs, so its figures are not the same import; "
              "see the failure above (community.okd.openshift_import_image needs the ImageStreamImport API; the local "
              "control plane serves it through a CRD and the simulator)")
    print(f"written: {options.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
