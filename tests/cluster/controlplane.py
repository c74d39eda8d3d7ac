"""A local Kubernetes control plane for the integration tests.

``controlplane.py up`` builds (once, into the cache) and starts etcd, kube-apiserver and
kube-controller-manager, installs the OpenShift image and Tekton CRDs, and starts the other test
components (local registry, test images, the aggregated API server for build.openshift.io and the
simulator) when their code is present. Everything runs in the background; ``down`` stops it all and
removes the state directory. ``env`` prints the two lines ``up`` printed.

Directories:
  CACHE = $MLOPS_NOTEBOOKS_CACHE or $XDG_CACHE_HOME/mlops-notebooks or ~/.cache/mlops-notebooks
          (binaries, Go module and build caches)
  STATE = $MLOPS_NOTEBOOKS_STATE or <repo>/build/cluster
          (certificates, kubeconfigs, etcd data, logs, pids; removed by ``down``)

Files in STATE that other components read:
  kubeconfig   admin kubeconfig (client certificate in group system:masters)
  env          ``KUBECONFIG=<path>`` and ``REGISTRY=<host:port>``
  certs.json   paths of every certificate and key (see ``generate_certificates``)
  pids.json    the processes this module started (name -> pid)
  logs/        one log file per process

Components started from other modules of tests/cluster (each optional until it exists):
  registry.start(state_dir) -> "127.0.0.1:<port>", registry.stop(state_dir)
  images.ensure_test_images(registry, cache_dir)
  aggregator / simulator: a package with ``start(state_dir, kubeconfig, registry, certs)`` and
    ``stop(state_dir)`` (``certs`` is the dict of certs.json), or else a ``__main__`` run as
    ``python -m <name> --state-dir S --kubeconfig K --registry R --certs S/certs.json``.

Also usable as a library: ``up(state_dir)`` returns a ``ControlPlane``; ``down(state_dir)``.
"""

from __future__ import annotations

import argparse
import base64
import concurrent.futures
import datetime
import importlib
import ipaddress
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

CLUSTER_DIR = Path(__file__).resolve().parent
REPO_ROOT = CLUSTER_DIR.parent.parent
CRD_DIR = CLUSTER_DIR / "crds"

SERVICE_CLUSTER_IP_RANGE = "10.96.0.0/12"
KUBERNETES_SERVICE_IP = "10.96.0.1"
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"
# The aggregated API server for build.openshift.io is registered as OpenShift registers its own:
# Service "api" in namespace "openshift-apiserver".
AGGREGATOR_SERVICE_NAMESPACE = "openshift-apiserver"
AGGREGATOR_SERVICE_NAME = "api"
FRONT_PROXY_CLIENT_NAME = "front-proxy-client"
# Controllers of kube-controller-manager that a test cluster needs: namespace deletion, the "default"
# ServiceAccount, garbage collection of owned objects, the aggregated admin/edit/view ClusterRoles and
# the kube-root-ca.crt ConfigMap. Node lifecycle is left out: the simulator's kubelet owns its Node.
CONTROLLERS = "namespace,serviceaccount,garbagecollector,clusterrole-aggregation,root-ca-cert-publisher"
ADMISSION_PLUGINS = ",".join(
    [
        "NamespaceLifecycle",
        "LimitRanger",
        "ServiceAccount",
        "PodSecurity",
        "NodeRestriction",
        "Priority",
        "DefaultTolerationSeconds",
        "ResourceQuota",
        "MutatingAdmissionWebhook",
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionWebhook",
    ]
)
READY_TIMEOUT_SECONDS = 120.0
STOP_TIMEOUT_SECONDS = 15.0
OPTIONAL_COMPONENTS = ("aggregator", "simulator")


class ControlPlaneError(RuntimeError):
    """The control plane could not be built, started or stopped; the message says why."""


def log(message: str) -> None:
    print(f"[controlplane] {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------- paths


def cache_dir() -> Path:
    if os.environ.get("MLOPS_NOTEBOOKS_CACHE"):
        return Path(os.environ["MLOPS_NOTEBOOKS_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "mlops-notebooks"


def default_state_dir() -> Path:
    return Path(os.environ.get("MLOPS_NOTEBOOKS_STATE") or REPO_ROOT / "build" / "cluster")


def read_versions() -> dict[str, str]:
    """The pinned versions of versions.env as a dict."""
    versions: dict[str, str] = {}
    for line in (CLUSTER_DIR / "versions.env").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            versions[key.strip()] = value.strip()
    return versions


# ------------------------------------------------------------------------------------------ binaries


def ensure_binaries() -> dict[str, Path]:
    """Build the binaries once (build_binaries.sh prints the build time) and return their paths."""
    versions = read_versions()
    bin_dir = cache_dir() / "bin"
    wanted = {
        "etcd": bin_dir / f"etcd-{versions['ETCD_VERSION']}",
        "kube-apiserver": bin_dir / f"kube-apiserver-{versions['KUBERNETES_VERSION']}",
        "kube-controller-manager": bin_dir / f"kube-controller-manager-{versions['KUBERNETES_VERSION']}",
    }
    missing = [name for name, path in wanted.items() if not os.access(path, os.X_OK)]
    if missing:
        log(f"building {', '.join(missing)} from Go modules (first time only; log: {cache_dir() / 'build-binaries.log'})")
        started = time.monotonic()
        cache_dir().mkdir(parents=True, exist_ok=True)
        with open(cache_dir() / "build-binaries.log", "ab") as build_log:
            result = subprocess.run(
                ["bash", str(CLUSTER_DIR / "build_binaries.sh"), "all"],
                stdout=subprocess.DEVNULL,
                stderr=build_log,
                check=False,
            )
        if result.returncode != 0:
            build_log_lines = (cache_dir() / "build-binaries.log").read_text(errors="replace").splitlines()
            raise ControlPlaneError(
                f"building the control plane binaries failed (exit {result.returncode}); last lines of "
                f"{cache_dir() / 'build-binaries.log'}:\n" + "\n".join(build_log_lines[-15:])
            )
        log(f"first build of {', '.join(missing)} took {time.monotonic() - started:.0f} s")
    return wanted


# -------------------------------------------------------------------------------------- certificates


def _crypto() -> Any:
    try:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec, rsa
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
    except ImportError as error:  # pragma: no cover - the venv has it through its dependencies
        raise ControlPlaneError(f"the 'cryptography' package is needed to make certificates: {error}") from error
    return x509, hashes, serialization, ec, rsa, ExtendedKeyUsageOID, NameOID


@dataclass
class _KeyPair:
    cert: Any
    key: Any


def _write_key_pair(directory: Path, name: str, pair: _KeyPair) -> dict[str, str]:
    _x509, _hashes, serialization, _ec, _rsa, _eku_oid, _name_oid = _crypto()
    cert_path = directory / f"{name}.crt"
    key_path = directory / f"{name}.key"
    cert_path.write_bytes(pair.cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        pair.key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    key_path.chmod(0o600)
    return {"cert": str(cert_path), "key": str(key_path)}


def _new_certificate(
    common_name: str,
    *,
    issuer: _KeyPair | None,
    organizations: tuple[str, ...] = (),
    is_ca: bool = False,
    server_names: tuple[str, ...] = (),
    client: bool = False,
) -> _KeyPair:
    """A P-256 key and a certificate for it, self-signed when ``issuer`` is None."""
    x509, hashes, _serialization, ec, _rsa, ExtendedKeyUsageOID, NameOID = _crypto()
    key = ec.generate_private_key(ec.SECP256R1())
    attributes = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, org) for org in organizations]
    attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    subject = x509.Name(attributes)
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.cert.subject if issuer else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=365 if is_ca else 30))
        .add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), critical=True)
    )
    if is_ca:
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                key_encipherment=False, data_encipherment=False, key_agreement=False,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
    else:
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=True, key_encipherment=True, key_cert_sign=False, crl_sign=False,
                content_commitment=False, data_encipherment=False, key_agreement=False,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        usages = []
        if server_names:
            usages.append(ExtendedKeyUsageOID.SERVER_AUTH)
        if client:
            usages.append(ExtendedKeyUsageOID.CLIENT_AUTH)
        builder = builder.add_extension(x509.ExtendedKeyUsage(usages), critical=False)
    if server_names:
        alternative_names: list[Any] = []
        for name in server_names:
            try:
                alternative_names.append(x509.IPAddress(ipaddress.ip_address(name)))
            except ValueError:
                alternative_names.append(x509.DNSName(name))
        builder = builder.add_extension(x509.SubjectAlternativeName(alternative_names), critical=False)
    signing = issuer or _KeyPair(cert=None, key=key)
    return _KeyPair(cert=builder.sign(signing.key, hashes.SHA256()), key=key)


def issue_certificate(
    ca: dict[str, str],
    directory: Path,
    name: str,
    common_name: str,
    *,
    organizations: tuple[str, ...] = (),
    server_names: tuple[str, ...] = (),
    client: bool = False,
) -> dict[str, str]:
    """Issue a certificate from a CA of certs.json (paths ``cert`` and ``key``); return the new paths.

    For components that need a certificate of their own (for example a serving certificate for
    another Service name)."""
    x509, _hashes, serialization, _ec, _rsa, _eku_oid, _name_oid = _crypto()
    issuer = _KeyPair(
        cert=x509.load_pem_x509_certificate(Path(ca["cert"]).read_bytes()),
        key=serialization.load_pem_private_key(Path(ca["key"]).read_bytes(), password=None),
    )
    pair = _new_certificate(
        common_name, issuer=issuer, organizations=organizations, server_names=server_names, client=client
    )
    directory.mkdir(parents=True, exist_ok=True)
    return _write_key_pair(directory, name, pair)


def generate_certificates(pki_dir: Path) -> dict[str, Any]:
    """Write every certificate and key the control plane and its components need; return certs.json's content.

    - ``ca``: the cluster CA. kube-apiserver trusts client certificates it signed (``--client-ca-file``);
      it also signs the serving certificates of kube-apiserver, the aggregated API server and the
      kubelet endpoint, so it is the ``caBundle`` of the APIService and ``--kubelet-certificate-authority``.
    - ``serving_ca``: the same CA, under the name the aggregator and the kubelet look for.
    - ``apiserver``: kube-apiserver's serving certificate (127.0.0.1, localhost, kubernetes.default.svc, ...).
    - ``admin``: client certificate, CN=mlops-admin, O=system:masters.
    - ``controller_manager``: client certificate for kube-controller-manager (O=system:masters).
    - ``front_proxy_ca`` / ``front_proxy_client``: the request-header CA and the client certificate
      kube-apiserver presents to aggregated API servers; ``requestheader_allowed_names`` lists its CN.
    - ``aggregator_serving``: serving certificate for ``api.openshift-apiserver.svc`` and 127.0.0.1.
    - ``kubelet_serving``: serving certificate for the kubelet endpoint (127.0.0.1, localhost).
    - ``kubelet_client``: the client certificate kube-apiserver presents to the kubelet (O=system:masters).
    - ``service_account``: RSA key pair that signs and verifies ServiceAccount tokens
      (``private``/``public``).
    """
    _x509, _hashes, serialization, _ec, rsa, _eku_oid, _name_oid = _crypto()
    pki_dir.mkdir(parents=True, exist_ok=True)
    ca = _new_certificate("mlops-notebooks-cluster-ca", issuer=None, is_ca=True)
    front_proxy_ca = _new_certificate("mlops-notebooks-front-proxy-ca", issuer=None, is_ca=True)
    local_names = ("127.0.0.1", "localhost")
    apiserver_names = local_names + (
        KUBERNETES_SERVICE_IP,
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
    )
    aggregator_service = f"{AGGREGATOR_SERVICE_NAME}.{AGGREGATOR_SERVICE_NAMESPACE}.svc"
    certs: dict[str, Any] = {
        "ca": _write_key_pair(pki_dir, "ca", ca),
        "front_proxy_ca": _write_key_pair(pki_dir, "front-proxy-ca", front_proxy_ca),
        "apiserver": _write_key_pair(
            pki_dir, "apiserver", _new_certificate("kube-apiserver", issuer=ca, server_names=apiserver_names)
        ),
        "admin": _write_key_pair(
            pki_dir,
            "admin",
            _new_certificate("mlops-admin", issuer=ca, organizations=("system:masters",), client=True),
        ),
        "controller_manager": _write_key_pair(
            pki_dir,
            "controller-manager",
            _new_certificate(
                "system:kube-controller-manager", issuer=ca, organizations=("system:masters",), client=True
            ),
        ),
        "front_proxy_client": _write_key_pair(
            pki_dir, "front-proxy-client", _new_certificate(FRONT_PROXY_CLIENT_NAME, issuer=front_proxy_ca, client=True)
        ),
        "aggregator_serving": _write_key_pair(
            pki_dir,
            "aggregator-serving",
            _new_certificate(
                aggregator_service,
                issuer=ca,
                server_names=(aggregator_service, f"{aggregator_service}.cluster.local") + local_names,
            ),
        ),
        "kubelet_serving": _write_key_pair(
            pki_dir, "kubelet-serving", _new_certificate("kubelet", issuer=ca, server_names=local_names)
        ),
        "kubelet_client": _write_key_pair(
            pki_dir,
            "kubelet-client",
            _new_certificate(
                "kube-apiserver-kubelet-client", issuer=ca, organizations=("system:masters",), client=True
            ),
        ),
    }
    certs["serving_ca"] = dict(certs["ca"])
    certs["requestheader_allowed_names"] = [FRONT_PROXY_CLIENT_NAME]
    certs["aggregator_service"] = {"namespace": AGGREGATOR_SERVICE_NAMESPACE, "name": AGGREGATOR_SERVICE_NAME}
    service_account_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private_path = pki_dir / "service-account.key"
    public_path = pki_dir / "service-account.pub"
    private_path.write_bytes(
        service_account_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    private_path.chmod(0o600)
    public_path.write_bytes(
        service_account_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    certs["service_account"] = {"private": str(private_path), "public": str(public_path)}
    return certs


def write_kubeconfig(path: Path, server: str, ca_file: str, cert_file: str, key_file: str, user: str) -> None:
    """A kubeconfig with the CA and client certificate embedded, so it can be copied anywhere."""

    def encoded(file_name: str) -> str:
        return base64.b64encode(Path(file_name).read_bytes()).decode("ascii")

    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "mlops-local", "cluster": {"server": server, "certificate-authority-data": encoded(ca_file)}}
        ],
        "users": [
            {
                "name": user,
                "user": {"client-certificate-data": encoded(cert_file), "client-key-data": encoded(key_file)},
            }
        ],
        "contexts": [{"name": f"{user}@mlops-local", "context": {"cluster": "mlops-local", "user": user}}],
        "current-context": f"{user}@mlops-local",
        "preferences": {},
    }
    # JSON is YAML: every kubeconfig reader accepts it.
    path.write_text(json.dumps(config, indent=2) + "\n")
    path.chmod(0o600)


# ------------------------------------------------------------------------------------------ processes


def free_ports(count: int) -> list[int]:
    """``count`` distinct free loopback ports (the sockets stay open until all are picked, so no repeats)."""
    sockets = []
    try:
        for _index in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sockets.append(sock)
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _read_pids(state_dir: Path) -> dict[str, int]:
    try:
        return json.loads((state_dir / "pids.json").read_text())
    except (FileNotFoundError, ValueError):
        return {}


def _record_pid(state_dir: Path, name: str, pid: int) -> None:
    pids = _read_pids(state_dir)
    pids[name] = pid
    temporary = state_dir / "pids.json.tmp"
    temporary.write_text(json.dumps(pids, indent=2) + "\n")
    temporary.replace(state_dir / "pids.json")


def _pid_belongs_to(pid: int, state_dir: Path) -> bool:
    """True when ``pid`` is alive and its command line mentions ``state_dir`` (guards against pid reuse)."""
    try:
        command_line = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        status = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return False
    if status.split(") ", 1)[-1].startswith("Z"):  # a zombie has already exited
        return False
    return str(state_dir) in command_line


def start_process(state_dir: Path, name: str, argv: list[str], env: dict[str, str] | None = None) -> subprocess.Popen:
    """Start ``argv`` in its own session (it outlives this Python process), logging to STATE/logs/<name>.log.

    The command line must mention ``state_dir`` (every component's does, through a path): ``down``
    uses that to tell our processes from reused pids."""
    logs = state_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    with open(logs / f"{name}.log", "ab") as log_file:
        process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=env,
            cwd=state_dir,
        )
    _record_pid(state_dir, name, process.pid)
    return process


def stop_process(pid: int, state_dir: Path, name: str) -> None:
    if not _pid_belongs_to(pid, state_dir):
        return
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
    while time.monotonic() < deadline and _pid_belongs_to(pid, state_dir):
        _reap(pid)
        time.sleep(0.1)
    if _pid_belongs_to(pid, state_dir):
        log(f"{name} (pid {pid}) did not stop within {STOP_TIMEOUT_SECONDS:.0f} s; killing it")
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    _reap(pid)


def _reap(pid: int) -> None:
    """Collect the exit status when the process is our child (library use), so it leaves no zombie."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def log_tail(state_dir: Path, name: str, lines: int = 20) -> str:
    try:
        text = (state_dir / "logs" / f"{name}.log").read_text(errors="replace")
    except FileNotFoundError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


# ---------------------------------------------------------------------------------------- API access


class AdminApi:
    """Just enough of a Kubernetes REST client (standard library only) to bootstrap the cluster."""

    def __init__(self, server: str, ca_file: str, cert_file: str, key_file: str) -> None:
        self.server = server.rstrip("/")
        self._context = ssl.create_default_context(cafile=ca_file)
        self._context.load_cert_chain(cert_file, key_file)

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        content_type: str = "application/json",
        timeout: float = 10.0,
    ) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.server + path, data=data, method=method)
        if data is not None:
            request.add_header("Content-Type", content_type)
        request.add_header("Accept", "application/json")
        try:
            with urllib.request.urlopen(request, context=self._context, timeout=timeout) as response:
                return response.status, _json_or_text(response.read())
        except urllib.error.HTTPError as error:
            return error.code, _json_or_text(error.read())

    def watch_status(self, path: str, timeout: float = 10.0) -> tuple[int, Any]:
        """Open a watch on ``path`` (a collection URL with its query) and close it at once: the HTTP status, with
        the error body when it is not 200. A watch answers only once the resource's watch cache is ready."""
        separator = "&" if "?" in path else "?"
        request = urllib.request.Request(f"{self.server}{path}{separator}watch=true&timeoutSeconds=1", method="GET")
        request.add_header("Accept", "application/json")
        try:
            with urllib.request.urlopen(request, context=self._context, timeout=timeout) as response:
                return response.status, None
        except urllib.error.HTTPError as error:
            return error.code, _json_or_text(error.read())

    def apply(self, path: str, manifest: dict[str, Any], field_manager: str = "mlops-controlplane") -> Any:
        """Server-side apply of one object at ``path`` (the object's own URL)."""
        status, answer = self.request(
            "PATCH",
            f"{path}?fieldManager={field_manager}&force=true",
            manifest,
            content_type="application/apply-patch+yaml",
        )
        if status not in (200, 201):
            raise ControlPlaneError(f"applying {path} failed with HTTP {status}: {_message(answer)}")
        return answer


def _json_or_text(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode(errors="replace")


def _message(answer: Any) -> str:
    if isinstance(answer, dict):
        return str(answer.get("message") or answer)
    return str(answer)[:500]


def _wait(what: str, check: Callable[[], bool], timeout: float, on_timeout: Callable[[], str]) -> None:
    deadline = time.monotonic() + timeout
    delay = 0.05
    while True:
        if check():
            return
        if time.monotonic() > deadline:
            raise ControlPlaneError(f"timed out after {timeout:.0f} s waiting for {what}\n{on_timeout()}")
        time.sleep(delay)
        delay = min(delay * 1.5, 0.5)


# ------------------------------------------------------------------------------------------- the plan


@dataclass
class ControlPlane:
    """What ``up`` started: where to find it, and how to talk to it."""

    state_dir: Path
    kubeconfig: Path
    server: str
    registry: str | None
    certs: dict[str, Any]
    timings: dict[str, float] = field(default_factory=dict)

    def admin_api(self) -> AdminApi:
        return AdminApi(self.server, self.certs["ca"]["cert"], self.certs["admin"]["cert"], self.certs["admin"]["key"])

    def env_lines(self) -> list[str]:
        return [f"KUBECONFIG={self.kubeconfig}", f"REGISTRY={self.registry or ''}"]


def _is_running(state_dir: Path) -> bool:
    pids = _read_pids(state_dir)
    return bool(pids) and all(_pid_belongs_to(pid, state_dir) for pid in pids.values())


def load(state_dir: Path | None = None) -> ControlPlane | None:
    """The running control plane of ``state_dir``, or None when none runs there."""
    state_dir = (state_dir or default_state_dir()).resolve()
    try:
        info = json.loads((state_dir / "controlplane.json").read_text())
        certs = json.loads((state_dir / "certs.json").read_text())
    except (FileNotFoundError, ValueError):
        return None
    if not _is_running(state_dir):
        return None
    plane = ControlPlane(
        state_dir=state_dir,
        kubeconfig=Path(info["kubeconfig"]),
        server=info["server"],
        registry=info.get("registry"),
        certs=certs,
    )
    try:  # processes alive is not enough: one may be shutting down
        status, _body = plane.admin_api().request("GET", "/readyz", timeout=5)
    except (OSError, ssl.SSLError):
        return None
    return plane if status == 200 else None


def up(state_dir: Path | None = None, *, with_images: bool = True) -> ControlPlane:
    """Start everything (or return what already runs in ``state_dir``) and wait until it is ready."""
    state_dir = (state_dir or default_state_dir()).resolve()
    running = load(state_dir)
    if running is not None:
        log(f"already running in {state_dir}")
        return running
    if state_dir.exists():
        log(f"cleaning up a stopped control plane in {state_dir}")
        down(state_dir)
    started = time.monotonic()
    timings: dict[str, float] = {}

    def mark(name: str, since: float) -> None:
        timings[name] = time.monotonic() - since

    binaries = ensure_binaries()
    phase = time.monotonic()
    state_dir.mkdir(parents=True)
    certs = generate_certificates(state_dir / "pki")
    (state_dir / "certs.json").write_text(json.dumps(certs, indent=2) + "\n")
    mark("certificates", phase)

    try:
        etcd_url, server = _start_etcd_and_apiserver(state_dir, binaries, certs)
        kubeconfig = state_dir / "kubeconfig"
        write_kubeconfig(kubeconfig, server, certs["ca"]["cert"], certs["admin"]["cert"], certs["admin"]["key"], "admin")
        controller_kubeconfig = state_dir / "controller-manager.kubeconfig"
        write_kubeconfig(
            controller_kubeconfig,
            server,
            certs["ca"]["cert"],
            certs["controller_manager"]["cert"],
            certs["controller_manager"]["key"],
            "kube-controller-manager",
        )
        plane = ControlPlane(state_dir=state_dir, kubeconfig=kubeconfig, server=server, registry=None, certs=certs)
        api = plane.admin_api()

        with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
            # The registry and the test images do not need the API server: prepare them meanwhile.
            registry_future = pool.submit(_start_registry, state_dir, with_images, timings)
            phase = time.monotonic()
            _wait_ready(api, state_dir)
            mark("kube-apiserver ready", phase)
            phase = time.monotonic()
            _install_crds(api)
            mark("CRDs established", phase)
            _start_controller_manager(state_dir, binaries, controller_kubeconfig, certs)
            plane.registry = registry_future.result()

        _write_state_files(plane, etcd_url)
        phase = time.monotonic()
        # Each component's start() waits until it is ready: start them side by side.
        with concurrent.futures.ThreadPoolExecutor(max_workers=len(OPTIONAL_COMPONENTS)) as pool:
            for started_component in [pool.submit(_start_component, name, plane) for name in OPTIONAL_COMPONENTS]:
                started_component.result()
        _wait_discovery(api, state_dir)
        mark("components and discovery", phase)
    except BaseException:
        log("start-up failed; stopping what was started")
        _stop_all(state_dir)
        raise
    timings["total"] = time.monotonic() - started
    plane.timings = timings
    log(
        f"control plane up in {timings['total']:.1f} s ("
        + ", ".join(f"{name} {seconds:.1f} s" for name, seconds in timings.items() if name != "total")
        + ")"
    )
    return plane


def _start_etcd_and_apiserver(state_dir: Path, binaries: dict[str, Path], certs: dict[str, Any]) -> tuple[str, str]:
    client_port, peer_port, secure_port = free_ports(3)
    etcd_url = f"http://127.0.0.1:{client_port}"
    peer_url = f"http://127.0.0.1:{peer_port}"
    start_process(
        state_dir,
        "etcd",
        [
            str(binaries["etcd"]),
            "--name=mlops-test-etcd",
            f"--data-dir={state_dir / 'etcd'}",
            f"--listen-client-urls={etcd_url}",
            f"--advertise-client-urls={etcd_url}",
            f"--listen-peer-urls={peer_url}",
            f"--initial-advertise-peer-urls={peer_url}",
            f"--initial-cluster=mlops-test-etcd={peer_url}",
            # Test data: losing it on a crash is fine, and fsync on a shared disk is slow.
            "--unsafe-no-fsync=true",
            "--log-level=warn",
        ],
    )
    server = f"https://127.0.0.1:{secure_port}"
    start_process(
        state_dir,
        "kube-apiserver",
        [
            str(binaries["kube-apiserver"]),
            f"--etcd-servers={etcd_url}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            # The "kubernetes" Service's Endpoints may not be loopback addresses, and nothing runs in a pod
            # network that would use them: do not maintain them.
            "--endpoint-reconciler-type=none",
            f"--secure-port={secure_port}",
            f"--cert-dir={state_dir / 'pki'}",
            f"--tls-cert-file={certs['apiserver']['cert']}",
            f"--tls-private-key-file={certs['apiserver']['key']}",
            f"--client-ca-file={certs['ca']['cert']}",
            f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
            f"--service-account-key-file={certs['service_account']['public']}",
            f"--service-account-signing-key-file={certs['service_account']['private']}",
            f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
            "--authorization-mode=Node,RBAC",
            f"--enable-admission-plugins={ADMISSION_PLUGINS}",
            "--allow-privileged=true",
            # Aggregated API servers (build.openshift.io): request-header authentication.
            f"--requestheader-client-ca-file={certs['front_proxy_ca']['cert']}",
            f"--requestheader-allowed-names={FRONT_PROXY_CLIENT_NAME}",
            "--requestheader-username-headers=X-Remote-User",
            "--requestheader-group-headers=X-Remote-Group",
            "--requestheader-extra-headers-prefix=X-Remote-Extra-",
            f"--proxy-client-cert-file={certs['front_proxy_client']['cert']}",
            f"--proxy-client-key-file={certs['front_proxy_client']['key']}",
            # [aggregator helper] Endpoints may not hold loopback IPs (422), so the aggregated server is reached
            # through an ExternalName Service "localhost" with the APIService's port; only cluster routing (the
            # default, routing=false) resolves ExternalName Services.
            "--enable-aggregator-routing=false",
            # pods/log and pods/exec go to the simulator's kubelet endpoint.
            f"--kubelet-client-certificate={certs['kubelet_client']['cert']}",
            f"--kubelet-client-key={certs['kubelet_client']['key']}",
            f"--kubelet-certificate-authority={certs['ca']['cert']}",
            "--kubelet-preferred-address-types=InternalIP",
            "--profiling=false",
            "--v=1",
        ],
    )
    return etcd_url, server


def _wait_ready(api: AdminApi, state_dir: Path) -> None:
    def ready() -> bool:
        for name in ("etcd", "kube-apiserver"):
            pid = _read_pids(state_dir).get(name)
            if pid is None or not _pid_belongs_to(pid, state_dir):
                raise ControlPlaneError(f"{name} exited during start-up; last lines of its log:\n{log_tail(state_dir, name)}")
        try:
            status, _body = api.request("GET", "/readyz", timeout=2)
        except (OSError, ssl.SSLError):
            return False
        return status == 200

    _wait(
        "kube-apiserver to be ready",
        ready,
        READY_TIMEOUT_SECONDS,
        lambda: log_tail(state_dir, "kube-apiserver"),
    )


def crd_manifests() -> list[dict[str, Any]]:
    import yaml  # PyYAML is a runtime dependency of the collection

    manifests = []
    for path in sorted(CRD_DIR.glob("*.yaml")):
        manifests.extend(doc for doc in yaml.safe_load_all(path.read_text()) if doc)
    return manifests


def _install_crds(api: AdminApi) -> None:
    base = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
    names = []
    for manifest in crd_manifests():
        api.apply(f"{base}/{manifest['metadata']['name']}", manifest)
        names.append(manifest["metadata"]["name"])

    def established() -> bool:
        for name in names:
            status, crd = api.request("GET", f"{base}/{name}")
            conditions = crd.get("status", {}).get("conditions", []) if status == 200 else []
            if not any(c["type"] == "Established" and c["status"] == "True" for c in conditions):
                return False
        return True

    _wait("the CRDs to be established", established, 60, lambda: ", ".join(names))


def _start_controller_manager(
    state_dir: Path, binaries: dict[str, Path], kubeconfig: Path, certs: dict[str, Any]
) -> None:
    start_process(
        state_dir,
        "kube-controller-manager",
        [
            str(binaries["kube-controller-manager"]),
            f"--kubeconfig={kubeconfig}",
            f"--controllers={CONTROLLERS}",
            f"--root-ca-file={certs['ca']['cert']}",
            "--secure-port=0",
            "--leader-elect=false",
            "--v=1",
        ],
    )


def _start_registry(state_dir: Path, with_images: bool, timings: dict[str, float]) -> str | None:
    phase = time.monotonic()
    registry_module = _import_component("registry")
    if registry_module is None:
        log("tests/cluster/registry.py is not there yet: no local registry")
        return None
    try:
        address = registry_module.start(str(state_dir))
    except Exception as error:
        raise ControlPlaneError(f"the local registry did not start: {error}") from error
    timings["registry"] = time.monotonic() - phase
    if not with_images:
        return address
    images_module = _import_component("images")
    if images_module is None:
        log("tests/cluster/images.py is not there yet: no test images")
        return address
    missing = images_module.missing_tools() if hasattr(images_module, "missing_tools") else []
    if missing:
        log(f"no test images: {', '.join(missing)} not installed (scripts/bootstrap.sh images installs them)")
        return address
    phase = time.monotonic()
    try:
        images_module.ensure_test_images(address, str(cache_dir()))
    except Exception as error:
        raise ControlPlaneError(f"the test images could not be built or pushed: {error}") from error
    timings["test images"] = time.monotonic() - phase
    return address


def _import_component(name: str) -> Any:
    """Import tests/cluster/<name>(.py or package), or None when that file does not exist yet."""
    if not (CLUSTER_DIR / f"{name}.py").exists() and not (CLUSTER_DIR / name / "__init__.py").exists():
        return None
    if str(CLUSTER_DIR) not in sys.path:
        sys.path.insert(0, str(CLUSTER_DIR))
    return importlib.import_module(name)


def _start_component(name: str, plane: ControlPlane) -> None:
    module = _import_component(name)
    if module is None:
        log(f"tests/cluster/{name}/ is not there yet: not started")
        return
    try:
        module.start(str(plane.state_dir), str(plane.kubeconfig), plane.registry, plane.certs)
    except ControlPlaneError:
        raise
    except Exception as error:
        raise ControlPlaneError(f"{name} did not start: {error}") from error


def _wait_discovery(api: AdminApi, state_dir: Path) -> None:
    """Wait until discovery lists the groups the modules detect OpenShift and Tekton by, and their resources
    answer a LIST and a WATCH."""
    wanted = {"image.openshift.io", "tekton.dev"}
    if (CLUSTER_DIR / "aggregator").is_dir():
        wanted.add("build.openshift.io")

    def listed() -> bool:
        status, groups = api.request("GET", "/apis")
        if status != 200:
            return False
        names = {group["name"] for group in groups.get("groups", [])}
        if not wanted <= names:
            return False
        if "build.openshift.io" in wanted:
            status, _body = api.request("GET", "/apis/build.openshift.io/v1")
            return status == 200
        return True

    _wait(f"discovery to list {', '.join(sorted(wanted))}", listed, 60, lambda: log_tail(state_dir, "kube-apiserver"))
    _wait_list_and_watch(api, state_dir, _served_collections())


def _served_collections() -> list[str]:
    """Cluster-wide collection URLs of the resources the tests use that live in custom resources: this
    repository's CRDs, the aggregator's storage CRDs, and build.openshift.io as the aggregator serves it."""
    paths = []
    for crd in crd_manifests():
        spec = crd["spec"]
        version = next(v["name"] for v in spec["versions"] if v.get("storage"))
        paths.append(f"/apis/{spec['group']}/{version}/{spec['names']['plural']}")
    if _import_component("aggregator") is not None:
        translate = importlib.import_module("aggregator.translate")
        for plural in translate.KINDS:
            paths.append(f"/apis/{translate.STORAGE_GROUP}/{translate.VERSION}/{plural}")
            paths.append(f"/apis/{translate.GROUP}/{translate.VERSION}/{plural}")
    return paths


def _wait_list_and_watch(api: AdminApi, state_dir: Path, paths: list[str]) -> None:
    """Wait until a LIST and a WATCH on each of ``paths`` answer 200.

    A custom resource is served (Established, in discovery) before its watch cache is initialized; until then
    the API server answers a WATCH (and a LIST served from the cache) with 429 "storage is (re)initializing",
    which clients' watches do not retry. ``up`` says ready only when a client can list and watch everything."""
    waiting = list(paths)
    last_answers: dict[str, str] = {}

    def answering() -> bool:
        for path in list(waiting):
            status, answer = api.request("GET", f"{path}?limit=1")
            if status == 200:
                resource_version = (answer.get("metadata") or {}).get("resourceVersion", "")
                status, answer = api.watch_status(f"{path}?resourceVersion={resource_version}")
            if status != 200:
                last_answers[path] = f"HTTP {status}: {_message(answer)}"
                return False
            waiting.remove(path)
            last_answers.pop(path, None)
        return True

    _wait(
        f"LIST and WATCH to answer on {len(paths)} custom resources",
        answering,
        60,
        lambda: "\n".join(f"{path}: {answer}" for path, answer in last_answers.items())
        + "\n" + log_tail(state_dir, "kube-apiserver"),
    )


def _write_state_files(plane: ControlPlane, etcd_url: str) -> None:
    (plane.state_dir / "env").write_text("\n".join(plane.env_lines()) + "\n")
    info = {
        "kubeconfig": str(plane.kubeconfig),
        "server": plane.server,
        "registry": plane.registry,
        "etcd": etcd_url,
        "versions": read_versions(),
    }
    (plane.state_dir / "controlplane.json").write_text(json.dumps(info, indent=2) + "\n")


def _stop_all(state_dir: Path) -> None:
    for name in reversed(OPTIONAL_COMPONENTS):
        module = _import_component(name)
        if module is not None and hasattr(module, "stop"):
            try:
                module.stop(str(state_dir))
            except Exception as error:  # keep stopping the rest
                log(f"stopping {name} failed: {error}")
    registry_module = _import_component("registry")
    if registry_module is not None:
        try:
            registry_module.stop(str(state_dir))
        except Exception as error:
            log(f"stopping the registry failed: {error}")
    pids = _read_pids(state_dir)
    for name in reversed(list(pids)):  # reverse start order: etcd last
        stop_process(pids[name], state_dir, name)


def down(state_dir: Path | None = None) -> None:
    """Stop every process of ``state_dir`` and remove the directory."""
    state_dir = (state_dir or default_state_dir()).resolve()
    if not state_dir.exists():
        return
    _stop_all(state_dir)
    shutil.rmtree(state_dir, ignore_errors=True)


# ------------------------------------------------------------------------------------------------ CLI


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--state-dir", type=Path, default=None, help="default: $MLOPS_NOTEBOOKS_STATE or build/cluster")
    commands = parser.add_subparsers(dest="command", required=True)
    up_parser = commands.add_parser("up", help="start everything in the background; print KUBECONFIG= and REGISTRY=")
    up_parser.add_argument("--no-images", action="store_true", help="do not build or push the test images")
    commands.add_parser("down", help="stop everything and remove the state directory")
    commands.add_parser("env", help="print KUBECONFIG= and REGISTRY= of the running control plane")
    arguments = parser.parse_args(argv)
    state_dir = arguments.state_dir
    try:
        if arguments.command == "up":
            plane = up(state_dir, with_images=not arguments.no_images)
            print("\n".join(plane.env_lines()), flush=True)
        elif arguments.command == "down":
            down(state_dir)
            log("stopped")
        else:
            plane = load(state_dir)
            if plane is None:
                log("no control plane is running; start one with: make cluster-up")
                return 1
            print("\n".join(plane.env_lines()))
    except ControlPlaneError as error:
        log(f"error: {error}")
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
