#!/usr/bin/env bash
# ansible-test sanity on a copy of the working tree laid out as ansible_collections/mlops/notebooks.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BIN="$ROOT/.venv/bin"
mkdir -p "$ROOT/build"
# a tree of its own per run, so runs at the same time never share one
WORK="$(mktemp -d "$ROOT/build/sanity.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
TREE="$WORK/ansible_collections/mlops/notebooks"
PY_VERSION="$("$BIN/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"

# ansible-test bootstraps pip in its per-test venvs with a script it downloads from a host outside
# the package registries; give it our stand-in under the name it looks for.
PIP_VERSION="$("$BIN/python" - <<'PY'
import re, ansible_test, os
src = open(os.path.join(os.path.dirname(ansible_test.__file__), "_internal", "python_requirements.py")).read()
print(re.search(r"pip='([0-9.]+)'", src).group(1))
PY
)"
GET_PIP="$HOME/.ansible/test/cache/get_pip_${PIP_VERSION//./_}.py"
if [ ! -f "$GET_PIP" ] || grep -q "Stand-in for the pip bootstrap" "$GET_PIP"; then
  mkdir -p "$(dirname "$GET_PIP")"
  cp "$ROOT/scripts/get_pip_offline.py" "$GET_PIP"
fi

rm -rf "$(dirname "$(dirname "$TREE")")" && mkdir -p "$TREE"
# Collection dependencies (galaxy.yml) must sit in the same collection root for ansible-test (doc fragments,
# module_utils imports); kubernetes.core comes with the venv's `ansible` package.
DEPS_ROOT="$("$BIN/python" -c 'import ansible_collections, os; print([p for p in ansible_collections.__path__ if os.path.isdir(os.path.join(p, "kubernetes", "core"))][0])')"
rm -rf "$(dirname "$TREE")/../kubernetes" && mkdir -p "$(dirname "$TREE")/../kubernetes"
cp -r "$DEPS_ROOT/kubernetes/core" "$(dirname "$TREE")/../kubernetes/core"
cd "$ROOT"
git ls-files -z --cached --others --exclude-standard | while IFS= read -r -d '' f; do
  [ -e "$f" ] && cp --parents "$f" "$TREE/"
done
# the copy is its own git repository, or ansible-test would see this checkout's .gitignore around it
cd "$TREE" && git init -q && git add -A
PATH="$BIN:$PATH" "$BIN/ansible-test" sanity --python "$PY_VERSION" --color no --truncate 0 "$@"
