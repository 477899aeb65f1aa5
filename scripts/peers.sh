#!/usr/bin/env bash
# Builds the field's own tools that shipsure's tests and benchmarks run as real peers, from
# their pinned Go module releases, into .tools/bin (ignored by git). A peer already built at
# its pinned version is skipped, so a second run costs nothing. Nothing is downloaded while
# tests run: tests find the peers here or skip with the reason.
set -euo pipefail
cd "$(dirname "$0")/.."

# name  module/cmd@version  (one line a peer; the version is the pin)
PEERS=(
  "registry  github.com/distribution/distribution/v3/cmd/registry@v3.1.2"
  "crane     github.com/google/go-containerregistry/cmd/crane@v0.22.1"
  "regctl    github.com/regclient/regclient/cmd/regctl@v0.11.7"
  "oras      oras.land/oras/cmd/oras@v1.3.6"
)

TOOLS=$PWD/.tools
mkdir -p "$TOOLS/bin" "$TOOLS/stamps"
# Debian 12's golang-go (1.19) is too old for these modules; the upstream tarball's Go is
# usually in /usr/local/go and not always on a non-login PATH.
[ -x /usr/local/go/bin/go ] && PATH=$PATH:/usr/local/go/bin
if ! command -v go >/dev/null 2>&1; then
  echo "peers: no Go toolchain on PATH; tests that need a Go peer will be skipped" >&2
  exit 0
fi
export GOBIN=$TOOLS/bin GOFLAGS=-buildvcs=false CGO_ENABLED=0
for line in "${PEERS[@]}"; do
  read -r name target <<<"$line"
  stamp=$TOOLS/stamps/$name
  if [ -x "$TOOLS/bin/$name" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$target" ]; then
    continue
  fi
  echo "peers: building $name ($target)" >&2
  started=$SECONDS
  if go install "$target"; then
    echo "$target" >"$stamp"
    echo "peers: built $name in $((SECONDS - started)) s" >&2
  else
    echo "peers: could not build $name from $target; its tests will be skipped" >&2
  fi
done
