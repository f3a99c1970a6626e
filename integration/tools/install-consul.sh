#!/usr/bin/env bash
# Builds the Consul agent used by the integration tests and `make demo`.
#
# Debian has no consul package and the only network here is the Go module
# proxy, so Consul is built from its Go module. Its go.mod replaces several
# modules with nested directories of the repository, which `go install`
# refuses; gomod-build.sh copies the module out of the module cache, drops the
# replace directives and builds it with -mod=mod against the published
# versions of those modules.
#
# Idempotent: nothing is done when $BIN_DIR/consul already reports the pinned
# version. A per-user cache (~/.cache/latch) makes fresh clones on the same
# machine skip the ~8-minute build.
set -euo pipefail

VERSION="${CONSUL_VERSION:-1.22.0}"
BIN_DIR="${1:?usage: install-consul.sh BIN_DIR}"
CACHE_DIR="${LATCH_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/latch}"
mkdir -p "$BIN_DIR"

have_version() {
	[ -x "$1" ] && [[ "$("$1" version 2>/dev/null)" == "Consul v${VERSION}"* ]]
}

if have_version "$BIN_DIR/consul"; then
	exit 0
fi
if have_version "$CACHE_DIR/consul-$VERSION"; then
	cp "$CACHE_DIR/consul-$VERSION" "$BIN_DIR/consul"
	echo "consul v$VERSION: copied from $CACHE_DIR"
	exit 0
fi

echo "consul v$VERSION: building from the Go module (about 8 minutes the first time)"
# Nested consul modules are pinned at versions the checksum database may not
# know; fetch them straight from the proxy without a sumdb check.
export GONOSUMDB="github.com/hashicorp/consul/*${GONOSUMDB:+,$GONOSUMDB}"
# shellcheck source=gomod-build.sh
. "$(dirname "$0")/gomod-build.sh"
gomod_build github.com/hashicorp/consul "$VERSION" . "$BIN_DIR/consul"
mkdir -p "$CACHE_DIR" && cp "$BIN_DIR/consul" "$CACHE_DIR/consul-$VERSION"
echo "consul v$VERSION: built into $BIN_DIR"
