#!/usr/bin/env bash
# Installs everything the project needs on a fresh machine, reusing what is cached.
#   scripts/bootstrap.sh [python] [browser] [images]
#     python  - Python venv with the collection's runtime and test dependencies (always)
#     browser - Debian's chromium, for the HTML report test
#     images  - buildah, skopeo, docker-registry, debootstrap (local backends, control plane)
#     lint    - shellcheck, which ansible-test sanity runs on shell scripts
# The venv lives in the cache, keyed by the hash of the requirement files, and .venv links to it.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
CACHE="${MLOPS_NOTEBOOKS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mlops-notebooks}"
PYTHON="${PYTHON:-python3}"
mkdir -p "$CACHE"

log() { printf '[bootstrap] %s\n' "$*" >&2; }

apt_install() {
  local missing=()
  for pkg in "$@"; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "installing Debian packages: ${missing[*]}"
  local sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

python_env() {
  local hash venv
  hash="$(cat "$ROOT/requirements.txt" "$ROOT/requirements-test.txt" | sha256sum | cut -c1-16)"
  venv="$CACHE/venv-$hash"
  if [ ! -x "$venv/bin/ansible-playbook" ] || [ ! -f "$venv/.complete" ]; then
    local start=$SECONDS
    log "creating virtual environment $venv"
    rm -rf "$venv"
    "$PYTHON" -m venv "$venv"
    "$venv/bin/pip" install -q --cache-dir "$CACHE/pip" --upgrade pip
    "$venv/bin/pip" install -q --cache-dir "$CACHE/pip" -r "$ROOT/requirements.txt" -r "$ROOT/requirements-test.txt"
    touch "$venv/.complete"
    log "virtual environment ready in $((SECONDS - start)) s"
  fi
  ln -sfn "$venv" "$ROOT/.venv"
}

want_python=1 want_browser=0 want_images=0 want_lint=0
for arg in "$@"; do
  case "$arg" in
    python) want_python=1 ;;
    browser) want_browser=1 ;;
    images) want_images=1 ;;
    lint) want_lint=1 ;;
    *) log "unknown component: $arg"; exit 2 ;;
  esac
done

[ $want_browser -eq 1 ] && apt_install chromium
[ $want_images -eq 1 ] && apt_install buildah skopeo docker-registry debootstrap
[ $want_lint -eq 1 ] && apt_install shellcheck
[ $want_python -eq 1 ] && python_env
exit 0
