"""``python -m simulator --state-dir S --kubeconfig K --registry R --certs S/certs.json``: run every controller until
SIGTERM. Writes ``S/simulator/ready`` once the Node is registered and the watches run."""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import signal
import sys
import threading
from pathlib import Path

from .builds import BuildController
from .imports import ImageImporter
from .kube import Kube
from .kubelet import Kubelet
from .runtime import choose_store
from .streamimports import StreamImportController
from .tekton import PipelineRunController, TaskRunController

LOG = logging.getLogger("simulator")


def cache_dir() -> Path:
    # The same rule as tests/cluster/controlplane.py, so buildah's image store is kept with the other caches.
    if os.environ.get("MLOPS_NOTEBOOKS_CACHE"):
        return Path(os.environ["MLOPS_NOTEBOOKS_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "mlops-notebooks"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="simulator", description=__doc__)
    parser.add_argument("--state-dir", required=True, type=Path)
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--certs", required=True, type=Path)
    parser.add_argument("--registry", default="", help="host:port of the local registry (plays the internal one)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("urllib3").setLevel(logging.WARNING)
    own_dir = args.state_dir / "simulator"
    own_dir.mkdir(parents=True, exist_ok=True)
    ready_file = own_dir / "ready"
    ready_file.unlink(missing_ok=True)
    stop = threading.Event()
    try:
        certs = json.loads(args.certs.read_text())
        kube = Kube(args.kubeconfig)
        instance = hashlib.sha256(str(args.state_dir.resolve()).encode()).hexdigest()[:6]
        # One store (and so one run root) for every simulator on this machine: pulled images are reused.
        runtime = choose_store(cache_dir(), instance)
        LOG.info("image store: %s (%s)", runtime.root, runtime.driver)
        kubelet = Kubelet(kube, runtime, own_dir, certs, stop)
        kubelet.start()
        importer = ImageImporter(kube, args.registry, stop)
        importer.start()
        StreamImportController(kube, importer, certs, stop).start()
        BuildController(kube, runtime, args.registry, args.state_dir / "buildlogs", importer, stop).start()
        TaskRunController(kube, runtime, own_dir, kubelet.claims_dir, stop, kubelet).start()
        PipelineRunController(kube, stop).start()
    except Exception as error:  # start-up failures in one line, for the log the starter shows
        LOG.error("start-up failed: %s", error)
        return 1
    ready_file.write_text("ready\n")
    LOG.info("simulator running: node %s, kubelet port %d, registry %s", "mlops-sim-node", kubelet.port, args.registry)
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    signal.signal(signal.SIGINT, lambda *_: stopping.set())
    while not stopping.wait(1.0):
        pass
    LOG.info("stopping: ending running pods, builds and steps")
    stop.set()
    kubelet.shutdown()
    ready_file.unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
