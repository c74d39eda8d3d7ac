"""Test notebook images, built once with buildah from a Debian root file system and pushed to a local registry.

Three images, each a layer on the previous one, so the registry stores the Debian base once:

- ``testimages/no-python``: Debian minbase (debootstrap), no Python at all;
- ``testimages/python-only``: + Debian's python3 and an empty venv at ``/opt/app-root`` (no jupyterlab);
- ``testimages/notebook``: + jupyterlab, nbclient and ipykernel in that venv.

Like OpenShift's images, ``/opt/app-root`` belongs to group 0 and is group-writable, and ``HOME`` points into it,
so the images run under an arbitrary UID with group 0 and no passwd entry.

Cache (``<cache_dir>/testimages/``): a buildah storage root (vfs driver) where images are built, and an OCI layout
directory ``oci/`` holding every built image under ``<name>-<recipe key>``. The recipe key hashes everything that
goes into an image (its recipe, its parent's key, the CA bundle copied in), so changing a recipe rebuilds that image
and the ones above it; otherwise the next run only copies the compressed layers to the registry.

Command line: ``python tests/cluster/images.py --registry HOST:PORT`` (see ``--help``).
"""

from __future__ import annotations

import argparse
import base64
import dataclasses
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

DEBIAN_SUITE = "bookworm"
REPOSITORY_PREFIX = "testimages"
LOCAL_NAME_PREFIX = "localhost/mlops-testimages"
# Bump to rebuild every image after a change to how images are assembled that the recipes do not show.
RECIPE_FORMAT = 2
REQUIRED_TOOLS = ("buildah", "skopeo", "debootstrap")
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
IMAGE_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
APP_ROOT = "/opt/app-root"
APP_HOME = f"{APP_ROOT}/src"
OCI_MANIFEST_TYPES = (
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
)

# Keeps the root file system lean: no documentation, manuals or translations from later dpkg installs.
_LEAN_BASE_SCRIPT = r"""
set -eu
cat > /etc/dpkg/dpkg.cfg.d/01-mlops-testimages-lean <<'EOF'
path-exclude=/usr/share/doc/*
path-include=/usr/share/doc/*/copyright
path-exclude=/usr/share/man/*
path-exclude=/usr/share/info/*
path-exclude=/usr/share/locale/*
path-exclude=/usr/share/lintian/*
EOF
find /usr/share/doc -mindepth 1 -not -name copyright -not -type d -delete
find /usr/share/doc -mindepth 1 -type d -empty -delete
rm -rf /usr/share/man/* /usr/share/info/* /usr/share/locale/* /usr/share/lintian/*
rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb /var/cache/apt/*.bin /var/log/*.log /var/log/apt/*
"""

_PYTHON_SCRIPT = rf"""
set -eu
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends python3 python3-venv >/dev/null
rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb /var/cache/apt/*.bin /var/log/*.log /var/log/apt/*
python3 -m venv {APP_ROOT}
mkdir -p {APP_HOME}
chgrp -R 0 {APP_ROOT}
chmod -R g+rwX {APP_ROOT}
"""

_NOTEBOOK_PACKAGES = ("jupyterlab>=4,<5", "nbclient>=0.10", "ipykernel>=6.29")
_NOTEBOOK_SCRIPT = rf"""
set -eu
{APP_ROOT}/bin/pip install --no-cache-dir --disable-pip-version-check -q {" ".join(repr(p) for p in _NOTEBOOK_PACKAGES)}
{APP_ROOT}/bin/python -c 'import jupyterlab, nbclient, ipykernel'
chgrp -R 0 {APP_ROOT}
chmod -R g+rwX {APP_ROOT}
"""

_APP_ENV = {
    "PATH": f"{APP_ROOT}/bin:{SYSTEM_PATH}",
    "HOME": APP_HOME,
    "VIRTUAL_ENV": APP_ROOT,
    "PYTHONUNBUFFERED": "1",
    # The build copies the host's CA bundle in: pip in builds on top of these images reaches PyPI the same way.
    "PIP_CERT": IMAGE_CA_BUNDLE,
}


@dataclasses.dataclass(frozen=True)
class ImageRecipe:
    """How one test image is made: a shell script run as root in its parent (or in a fresh Debian root fs)."""

    name: str
    parent: str | None
    script: str
    env: dict[str, str]
    workdir: str
    description: str
    needs_network: bool


RECIPES: tuple[ImageRecipe, ...] = (
    ImageRecipe(
        name="no-python",
        parent=None,
        script=_LEAN_BASE_SCRIPT,
        env={"PATH": SYSTEM_PATH},
        workdir="/",
        description=f"Debian {DEBIAN_SUITE} minbase without Python (must fail notebook image validation)",
        needs_network=False,
    ),
    ImageRecipe(
        name="python-only",
        parent="no-python",
        script=_PYTHON_SCRIPT,
        env=_APP_ENV,
        workdir=APP_HOME,
        description="Python 3 with an empty venv at /opt/app-root, no jupyterlab (must fail notebook image validation)",
        needs_network=True,
    ),
    ImageRecipe(
        name="notebook",
        parent="python-only",
        script=_NOTEBOOK_SCRIPT,
        env=_APP_ENV,
        workdir=APP_HOME,
        description="Python 3 venv at /opt/app-root with jupyterlab, nbclient and ipykernel",
        needs_network=True,
    ),
)
IMAGE_NAMES = tuple(recipe.name for recipe in RECIPES)


class ImageError(RuntimeError):
    """A test image could not be built or pushed; the message says why."""


def default_cache_dir() -> str:
    """The project's cache directory, as scripts/bootstrap.sh computes it."""
    if os.environ.get("MLOPS_NOTEBOOKS_CACHE"):
        return os.environ["MLOPS_NOTEBOOKS_CACHE"]
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "mlops-notebooks")


def missing_tools() -> list[str]:
    """The Debian tools this module needs that are not installed (install with `scripts/bootstrap.sh images`)."""
    return [tool for tool in REQUIRED_TOOLS if shutil.which(tool) is None]


def ensure_test_images(registry: str, cache_dir: str, private: tuple[str, str, str] | None = None) -> dict:
    """Build the test images if the cache lacks them, and push them to ``registry`` (``host:port``, plain HTTP).

    ``private`` is ``(host:port, username, password)`` of a basic-auth registry that gets a copy of the notebook
    image. Returns ``{name: {"reference": "<registry>/testimages/<name>:latest", "digest": "sha256:..."}}`` for
    ``notebook``, ``python-only``, ``no-python`` and, with ``private``, ``private-notebook``.
    """
    cache = ImageCache(cache_dir)
    with cache.locked():
        layout_refs = cache.ensure_built()
        result: dict[str, dict[str, str]] = {}
        started = time.monotonic()
        for name in IMAGE_NAMES:
            reference = f"{registry}/{REPOSITORY_PREFIX}/{name}:latest"
            digest = cache.push(layout_refs[name], reference, credentials=None)
            result[name] = {"reference": reference, "digest": digest}
        if private is not None:
            private_registry, username, password = private
            reference = f"{private_registry}/{REPOSITORY_PREFIX}/notebook:latest"
            digest = cache.push(layout_refs["notebook"], reference, credentials=(username, password))
            result["private-notebook"] = {"reference": reference, "digest": digest}
        _log(f"test images present in {registry}{' and ' + private[0] if private else ''} "
             f"({time.monotonic() - started:.1f} s)")
    return result


class ImageCache:
    """The build cache under ``<cache_dir>/testimages``: buildah storage, OCI layout, debootstrap's .deb cache."""

    def __init__(self, cache_dir: str) -> None:
        self.root = Path(cache_dir).absolute() / "testimages"
        self.storage_root = self.root / "storage"
        self.run_root = self.root / "run"
        self.layout = self.root / "oci"
        self.deb_cache = self.root / "debs"
        self.build_log = self.root / "build.log"

    def locked(self) -> "_FileLock":
        """Serializes builds and pushes of concurrent test sessions that share this cache."""
        self.root.mkdir(parents=True, exist_ok=True)
        return _FileLock(self.root / ".lock")

    def recipe_keys(self) -> dict[str, str]:
        """Each image's cache key: a hash of its recipe, its parent's key and what the build copies in."""
        ca_digest = hashlib.sha256(HOST_CA_BUNDLE.read_bytes()).hexdigest() if HOST_CA_BUNDLE.exists() else "none"
        keys: dict[str, str] = {}
        for recipe in RECIPES:
            material = {
                "format": RECIPE_FORMAT,
                "suite": DEBIAN_SUITE,
                "recipe": dataclasses.asdict(recipe),
                "parent_key": keys.get(recipe.parent) if recipe.parent else None,
                "ca_bundle": ca_digest if recipe.needs_network else None,
            }
            keys[recipe.name] = hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()[:16]
        return keys

    def ensure_built(self) -> dict[str, str]:
        """Build what the OCI layout lacks; return each image's reference in the layout (``oci:<dir>:<ref>``)."""
        missing = missing_tools()
        if missing:
            raise ImageError(f"missing {', '.join(missing)}; run `scripts/bootstrap.sh images`")
        keys = self.recipe_keys()
        present = self._layout_refs()
        refs = {name: f"{name}-{key}" for name, key in keys.items()}
        to_build = [recipe for recipe in RECIPES if refs[recipe.name] not in present]
        if not to_build:
            return {name: f"oci:{self.layout}:{ref}" for name, ref in refs.items()}
        started = time.monotonic()
        _log(f"building test images {', '.join(r.name for r in to_build)} (cache {self.root}, log {self.build_log})")
        buildah = _Buildah(self.storage_root, self.run_root, self.build_log)
        buildah.remove_all_containers()  # leftovers of an interrupted build
        for recipe in RECIPES:
            local_image = f"{LOCAL_NAME_PREFIX}/{recipe.name}:{keys[recipe.name]}"
            if refs[recipe.name] in present:
                continue
            step_started = time.monotonic()
            if not buildah.has_image(local_image):
                parent_image = f"{LOCAL_NAME_PREFIX}/{recipe.parent}:{keys[recipe.parent]}" if recipe.parent else None
                if parent_image and not buildah.has_image(parent_image):
                    # The parent is in the layout but not in storage (storage pruned): take it from the layout.
                    buildah.pull(f"oci:{self.layout}:{refs[recipe.parent]}", parent_image)
                self._build(buildah, recipe, parent_image, local_image, keys[recipe.name])
            buildah.push(local_image, f"oci:{self.layout}:{refs[recipe.name]}")
            _log(f"built {recipe.name} in {time.monotonic() - step_started:.0f} s")
        _log(f"test images built in {time.monotonic() - started:.0f} s")
        self._prune(buildah, keys)
        return {name: f"oci:{self.layout}:{ref}" for name, ref in refs.items()}

    def push(self, layout_ref: str, reference: str, credentials: tuple[str, str] | None) -> str:
        """Copy an image from the layout to a registry unless it is there already; return its manifest digest."""
        wanted = self._layout_digest(layout_ref.rsplit(":", 1)[1])
        if _registry_digest(reference, credentials) == wanted:
            return wanted
        with tempfile.NamedTemporaryFile(prefix="digest-", dir=self.root) as digest_file:
            command = ["skopeo", "copy", "--quiet", "--preserve-digests", "--dest-tls-verify=false",
                       "--digestfile", digest_file.name]
            if credentials is not None:
                command += ["--dest-creds", f"{credentials[0]}:{credentials[1]}"]
            _run(command + [layout_ref, f"docker://{reference}"], what=f"pushing {reference}")
            pushed = Path(digest_file.name).read_text().strip()
        if pushed != wanted:
            raise ImageError(f"pushed {reference} with digest {pushed}, expected the cached {wanted}")
        return pushed

    def _build(self, buildah: "_Buildah", recipe: ImageRecipe, parent_image: str | None, local_image: str,
               key: str) -> None:
        if parent_image is None:
            container = buildah.from_image("scratch", f"mlops-testimages-{recipe.name}")
            root_fs = buildah.mount(container)
            self.deb_cache.mkdir(parents=True, exist_ok=True)
            _run(["debootstrap", "--variant=minbase", f"--cache-dir={self.deb_cache}", DEBIAN_SUITE, root_fs,
                  debian_mirror()], what="debootstrap", log=self.build_log)
            # debootstrap copies the build host's resolver and name in; runtimes provide their own.
            for host_file in ("etc/resolv.conf", "etc/hostname"):
                Path(root_fs, host_file).unlink(missing_ok=True)
            buildah.unmount(container)
        else:
            container = buildah.from_image(parent_image, f"mlops-testimages-{recipe.name}")
        if recipe.needs_network:
            # The host's trust store (it may hold a proxy's CA), so pip inside reaches PyPI as the host does.
            # (buildah run provides /etc/resolv.conf itself.)
            buildah.copy(container, str(HOST_CA_BUNDLE), IMAGE_CA_BUNDLE)
        buildah.run(container, recipe.script)
        config = ["--workingdir", recipe.workdir, "--cmd", "/bin/sh", "--user", "0",
                  "--label", f"io.mlops-notebooks.testimage={recipe.name}",
                  "--label", f"io.mlops-notebooks.recipe-key={key}",
                  "--annotation", f"org.opencontainers.image.description={recipe.description}"]
        for name, value in recipe.env.items():
            config += ["--env", f"{name}={value}"]
        buildah.config(container, config)
        buildah.commit(container, local_image)

    def _prune(self, buildah: "_Buildah", keys: dict[str, str]) -> None:
        """Drop images of older recipes from the storage and the layout, so the cache does not grow."""
        current_images = {f"{LOCAL_NAME_PREFIX}/{name}:{key}" for name, key in keys.items()}
        for image in buildah.image_names():
            if image.startswith(f"{LOCAL_NAME_PREFIX}/") and image not in current_images:
                buildah.remove_image(image)
        current_refs = {f"{name}-{key}" for name, key in keys.items()}
        index = self._layout_index()
        kept = [m for m in index["manifests"]
                if m.get("annotations", {}).get("org.opencontainers.image.ref.name") in current_refs]
        if len(kept) == len(index["manifests"]):
            return
        index["manifests"] = kept
        (self.layout / "index.json").write_text(json.dumps(index))
        reachable: set[str] = set()
        for descriptor in kept:
            reachable.add(descriptor["digest"])
            manifest = json.loads(self._blob_path(descriptor["digest"]).read_text())
            reachable.add(manifest["config"]["digest"])
            reachable.update(layer["digest"] for layer in manifest["layers"])
        for blob in (self.layout / "blobs" / "sha256").iterdir():
            if f"sha256:{blob.name}" not in reachable:
                blob.unlink()

    def _blob_path(self, digest: str) -> Path:
        algorithm, _colon, encoded = digest.partition(":")
        return self.layout / "blobs" / algorithm / encoded

    def _layout_index(self) -> dict:
        try:
            return json.loads((self.layout / "index.json").read_text())
        except FileNotFoundError:
            return {"manifests": []}

    def _layout_refs(self) -> set[str]:
        return {
            manifest.get("annotations", {}).get("org.opencontainers.image.ref.name", "")
            for manifest in self._layout_index()["manifests"]
        }

    def _layout_digest(self, ref: str) -> str:
        for manifest in self._layout_index()["manifests"]:
            if manifest.get("annotations", {}).get("org.opencontainers.image.ref.name") == ref:
                return manifest["digest"]
        raise ImageError(f"{ref} is not in the image cache {self.layout}")


class _Buildah:
    """buildah with a private vfs storage root and chroot isolation (no daemon, no overlay, no user namespaces)."""

    def __init__(self, storage_root: Path, run_root: Path, log: Path) -> None:
        self.global_options = ["--root", str(storage_root), "--runroot", str(run_root), "--storage-driver", "vfs"]
        self.log = log

    def _call(self, *args: str, what: str, logged: bool = False) -> str:
        return _run(["buildah", *self.global_options, *args], what=what, log=self.log if logged else None)

    def has_image(self, image: str) -> bool:
        completed = subprocess.run(["buildah", *self.global_options, "inspect", "--type", "image", image],
                                   capture_output=True, check=False)
        return completed.returncode == 0

    def image_names(self) -> list[str]:
        listing = self._call("images", "--format", "{{.Name}}:{{.Tag}}", what="listing images")
        return [line.strip() for line in listing.splitlines() if line.strip()]

    def remove_image(self, image: str) -> None:
        self._call("rmi", image, what=f"removing {image}")

    def remove_all_containers(self) -> None:
        self._call("rm", "--all", what="removing leftover build containers")

    def from_image(self, image: str, name: str) -> str:
        pull = [] if image == "scratch" else ["--pull=never"]
        return self._call("from", *pull, "--name", name, image, what=f"creating a container from {image}").strip()

    def pull(self, source: str, tag: str) -> None:
        image_id = self._call("pull", "--quiet", source, what=f"loading {source}").strip().splitlines()[-1]
        self._call("tag", image_id, tag, what=f"tagging {tag}")

    def mount(self, container: str) -> str:
        return self._call("mount", container, what=f"mounting {container}").strip()

    def unmount(self, container: str) -> None:
        self._call("unmount", container, what=f"unmounting {container}")

    def copy(self, container: str, source: str, destination: str) -> None:
        self._call("copy", container, source, destination, what=f"copying {source} into {container}")

    def run(self, container: str, script: str) -> None:
        # chroot isolation has no network namespace of its own: the host's network is the only choice.
        self._call("run", "--isolation", "chroot", "--network", "host", "--user", "0:0",
                   container, "--", "/bin/sh", "-c", script, what=f"building in {container}", logged=True)

    def config(self, container: str, options: list[str]) -> None:
        self._call("config", *options, container, what=f"configuring {container}")

    def commit(self, container: str, image: str) -> None:
        self._call("commit", "--quiet", "--rm", "--format", "oci", container, image,
                   what=f"committing {image}", logged=True)

    def push(self, image: str, destination: str) -> None:
        self._call("push", "--quiet", image, destination, what=f"exporting {image}", logged=True)


class _FileLock:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.handle: object = None

    def __enter__(self) -> "_FileLock":
        self.handle = open(self.path, "w")
        fcntl.flock(self.handle, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc_info: object) -> None:
        fcntl.flock(self.handle, fcntl.LOCK_UN)
        self.handle.close()


def debian_mirror(suite: str = DEBIAN_SUITE) -> str:
    """The Debian mirror apt uses for ``suite`` (deb822 .sources files or the one-line sources.list)."""
    candidates: list[tuple[list[str], list[str], list[str]]] = []  # (types, uris, suites)
    sources_dir = Path("/etc/apt/sources.list.d")
    for path in sorted(sources_dir.glob("*.sources")) if sources_dir.is_dir() else []:
        for stanza in re.split(r"\n\s*\n", path.read_text()):
            fields: dict[str, str] = {}
            for line in stanza.splitlines():
                if line.startswith("#") or ":" not in line or line[:1].isspace():
                    continue
                key, value = line.split(":", 1)
                fields[key.strip().lower()] = value.strip()
            if fields.get("enabled", "yes").lower() == "no":
                continue
            candidates.append((fields.get("types", "").split(), fields.get("uris", "").split(),
                               fields.get("suites", "").split()))
    list_files = [Path("/etc/apt/sources.list")]
    list_files += sorted(sources_dir.glob("*.list")) if sources_dir.is_dir() else []
    for path in list_files:
        if not path.is_file():
            continue
        for line in path.read_text().splitlines():
            words = re.sub(r"\[[^\]]*\]", " ", line.split("#", 1)[0]).split()
            if len(words) >= 3:
                candidates.append(([words[0]], [words[1]], [words[2]]))
    for types, uris, suites in candidates:
        if "deb" in types and suite in suites:
            for uri in uris:
                if uri.startswith(("http://", "https://")):
                    return uri
    raise ImageError(f"no Debian mirror for {suite} in apt's sources (/etc/apt/sources.list, sources.list.d)")


def _registry_digest(reference: str, credentials: tuple[str, str] | None) -> str | None:
    """The manifest digest the registry holds for ``host:port/repo:tag``, or None when it has none."""
    host, _slash, rest = reference.partition("/")
    repository, _colon, tag = rest.rpartition(":")
    request = urllib.request.Request(f"http://{host}/v2/{repository}/manifests/{tag}", method="HEAD")
    request.add_header("Accept", ", ".join(OCI_MANIFEST_TYPES))
    if credentials is not None:
        token = base64.b64encode(f"{credentials[0]}:{credentials[1]}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.headers.get("Docker-Content-Digest")
    except urllib.error.HTTPError as error:
        if error.code == 404:
            return None
        raise ImageError(f"registry {host} answered {error.code} for {reference}") from None
    except (urllib.error.URLError, OSError) as error:
        raise ImageError(f"registry {host} is not reachable: {error}") from None


def _run(command: list[str], what: str, log: Path | None = None) -> str:
    """Run a tool; on failure raise ImageError with the end of its output. Long steps go to the build log."""
    if log is not None:
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "ab") as log_file:
            log_file.write(f"\n$ {' '.join(command)}\n".encode())
            log_file.flush()
            completed = subprocess.run(command, stdout=log_file, stderr=subprocess.STDOUT, check=False)
        if completed.returncode != 0:
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-20:])
            raise ImageError(f"{what} failed (exit {completed.returncode}); end of {log}:\n{tail}")
        return ""
    completed = subprocess.run(command, capture_output=True, text=True, check=False)
    if completed.returncode != 0:
        raise ImageError(f"{what} failed (exit {completed.returncode}): {completed.stderr.strip()[-2000:]}")
    return completed.stdout


def _log(message: str) -> None:
    print(f"[images] {message}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build (once) and push the test notebook images.")
    parser.add_argument("--registry", help="HOST:PORT of a plain-HTTP registry; without it, only build the cache")
    parser.add_argument("--cache-dir", default=default_cache_dir(), help="cache directory (default: %(default)s)")
    parser.add_argument("--private-registry", help="HOST:PORT of a basic-auth registry for the private copy")
    parser.add_argument("--username", help="user name for --private-registry")
    parser.add_argument("--password-env", default="REGISTRY_PASSWORD",
                        help="environment variable holding the password for --private-registry (default: %(default)s)")
    arguments = parser.parse_args(argv)
    try:
        if arguments.registry is None:
            cache = ImageCache(arguments.cache_dir)
            with cache.locked():
                print(json.dumps(cache.ensure_built(), indent=2))
            return 0
        private = None
        if arguments.private_registry:
            password = os.environ.get(arguments.password_env)
            if not arguments.username or password is None:
                parser.error(f"--private-registry needs --username and the password in ${arguments.password_env}")
            private = (arguments.private_registry, arguments.username, password)
        print(json.dumps(ensure_test_images(arguments.registry, arguments.cache_dir, private), indent=2))
    except ImageError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
