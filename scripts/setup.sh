#!/usr/bin/env bash
# Sets up a machine for mcosup: Debian packages (when root), a virtualenv in .venv and the project's
# pip packages. Idempotent and quick when nothing changed, so every make target can call it.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages: buildah and docker-registry give real image builds into a real local registry,
# skopeo inspects images, kubectl is the real client the tests drive the emulator with.
need=()
for pair in buildah:buildah docker-registry:docker-registry skopeo:skopeo ostree:ostree kubectl:kubernetes-client; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || need+=("${pair#*:}")
done
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "setup: installing Debian packages: ${need[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${need[@]}" >/dev/null
  else
    echo "setup: missing Debian packages: ${need[*]}" >&2
    echo "setup: install them with: sudo apt-get install -y ${need[*]}" >&2
    exit 1
  fi
fi

PY=${PYTHON:-python3}
if ! "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "setup: mcosup needs Python >= 3.11 (found: $("$PY" --version 2>&1)); set PYTHON=/path/to/python3.11" >&2
  exit 1
fi
[ -x .venv/bin/python ] || "$PY" -m venv .venv
stamp=.venv/.mcosup-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -e '.[dev]'
  touch "$stamp"
fi

# The real control plane under the tests (kube-apiserver, kube-controller-manager, kubectl, etcd), built
# from the Go modules once per machine and version: only for what needs it (`make install`/`make test`),
# so `make demo` on the emulator stays quick on a fresh machine.
if [ "${1:-}" = --controlplane ]; then
  if ! command -v go >/dev/null 2>&1; then
    echo "setup: the test control plane is built with Go >= 1.26, and go is not on PATH" >&2
    echo "setup: install Go 1.26 (go.dev/dl, or your distribution's golang package if it is that new)" >&2
    exit 1
  fi
  scripts/controlplane.sh >/dev/null
fi
