#!/usr/bin/env bash
# Installs everything shipsure's demo, tests and benchmarks need on a Debian machine:
# Debian packages (only those missing), a virtualenv in .venv with the package and
# its development extras, and the field's Go tools the tests run as peers (scripts/peers.sh:
# distribution v3, crane, regctl, oras into .tools/bin). Safe to re-run; fast when nothing
# changed.
set -euo pipefail
cd "$(dirname "$0")/.."

DEBIAN_PACKAGES=(
  docker-registry   # distribution 2.8.2: the real registry every test runs against
  skopeo            # benchmark anchor for `verify --deep`; pulls in the peer tests
  redis-server      # lock backend tests
  etcd-server etcd-client
  postgresql
  git curl jq       # sequential curl walk benchmark anchor; stacks tests use git
  hyperfine apache2-utils
  python3-venv
)

missing=()
for pkg in "${DEBIAN_PACKAGES[@]}"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "setup: need root to install Debian packages: ${missing[*]}" >&2
    exit 3
  fi
  echo "setup: installing Debian packages: ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # Package scripts try to start services; the tests start their own on free ports.
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  rm -f /usr/sbin/policy-rc.d
fi

PYTHON=${PYTHON:-python3}
stamp=.venv/.installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  [ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
  .venv/bin/python -m pip install -q --upgrade pip >/dev/null
  .venv/bin/python -m pip install -q -e '.[dev]'
  touch "$stamp"
fi
# Bytecode, as `pip install` writes it for a regular install: without it (and with
# PYTHONDONTWRITEBYTECODE set) every run compiles every module again. Up-to-date files
# are skipped, so this is quick when nothing changed.
.venv/bin/python -m compileall -q shipsure >/dev/null
# The Go peers: built once (first build ~2 min on 2 cores), then skipped. Go's module and
# build caches are kept, so a rebuild after a pin change compiles only what changed.
bash scripts/peers.sh
