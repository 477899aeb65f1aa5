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
  # go install refuses modules whose go.mod has replace directives (terragrunt's has); such a
  # peer is built inside its downloaded module, where those directives apply. The proxy
  # serves v1.0.0 of terragrunt; later v1.0.x answer 403 "This module version is not
  # available".
  "terragrunt  github.com/gruntwork-io/terragrunt@v1.0.0  in-module"
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
  read -r name target how <<<"$line"
  stamp=$TOOLS/stamps/$name
  if [ -x "$TOOLS/bin/$name" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$target" ]; then
    continue
  fi
  echo "peers: building $name ($target)" >&2
  started=$SECONDS
  if [ "${how:-}" = in-module ]; then
    built=false
    if dir=$(go mod download -json "$target" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p') \
      && [ -n "$dir" ] && (cd "$dir" && go build -o "$TOOLS/bin/$name" .); then
      built=true
    fi
  elif go install "$target"; then
    built=true
  else
    built=false
  fi
  if $built; then
    echo "$target" >"$stamp"
    echo "peers: built $name in $((SECONDS - started)) s" >&2
  else
    echo "peers: could not build $name from $target; its tests will be skipped" >&2
  fi
done
