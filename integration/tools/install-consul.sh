#!/usr/bin/env bash
# Builds the Consul agent used by the integration tests and `make demo`.
#
# Debian has no consul package and the only network here is the Go module
# proxy, so Consul is built from its Go module. Its go.mod replaces several
# modules with nested directories of the repository, which `go install`
# refuses; so the module is copied out of the module cache, the replace
# directives are dropped, and it is built with -mod=mod against the published
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
work="$(mktemp -d)"
trap 'chmod -R u+w "$work" 2>/dev/null; rm -rf "$work"' EXIT

src="$(cd "$work" && GOFLAGS=-mod=mod go mod download -json "github.com/hashicorp/consul@v$VERSION" |
	sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
[ -d "$src" ] || { echo "install-consul: module download failed" >&2; exit 1; }
cp -r "$src" "$work/consul"
chmod -R u+w "$work/consul"
cd "$work/consul"

# Drop every replace directive (single-line and block form).
for old in $(awk '/^replace \(/{b=1;next} b&&/^\)/{b=0} b{print $1} /^replace [^(]/{print $2}' go.mod); do
	go mod edit -dropreplace="$old"
done

# Nested consul modules are pinned at versions the checksum database may not
# know; fetch them straight from the proxy without a sumdb check.
export GONOSUMDB="github.com/hashicorp/consul/*${GONOSUMDB:+,$GONOSUMDB}"
export GOFLAGS=-mod=mod
CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$BIN_DIR/consul.tmp" .
mv "$BIN_DIR/consul.tmp" "$BIN_DIR/consul"
mkdir -p "$CACHE_DIR" && cp "$BIN_DIR/consul" "$CACHE_DIR/consul-$VERSION"
echo "consul v$VERSION: built into $BIN_DIR"
