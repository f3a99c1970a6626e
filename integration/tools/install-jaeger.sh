#!/usr/bin/env bash
# Builds Jaeger (v2, all-in-one with in-memory storage and an OTLP receiver)
# for the tracing integration test.
#
# Jaeger publishes no Debian package and the only network here is the Go
# module proxy, so it is built from its Go module: in a scratch module,
# `go get -tool` resolves the command with its own go.mod's requirements and
# `go build` makes the binary (121 MB, about 8 minutes on 2 cores once).
# Versions after 1.75.0 were not verified here.
#
# Idempotent: nothing is done when $BIN_DIR/jaeger is the cached build of the
# pinned version. A per-user cache (~/.cache/latch) makes fresh clones on the
# same machine skip the build.
set -euo pipefail

VERSION="${JAEGER_VERSION:-1.75.0}"
BIN_DIR="${1:?usage: install-jaeger.sh BIN_DIR}"
CACHE_DIR="${LATCH_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/latch}"
mkdir -p "$BIN_DIR"

cached="$CACHE_DIR/jaeger-$VERSION"
if [ -x "$BIN_DIR/jaeger" ] && [ -x "$cached" ] && cmp -s "$BIN_DIR/jaeger" "$cached"; then
	exit 0
fi
if [ ! -x "$cached" ]; then
	echo "jaeger v$VERSION: building from the Go module (about 8 minutes the first time)"
	work="$(mktemp -d)"
	trap 'chmod -R u+w "$work" 2>/dev/null; rm -rf "$work"' EXIT
	(
		cd "$work"
		go mod init latch.local/jaeger-build >/dev/null 2>&1
		go get -tool "github.com/jaegertracing/jaeger/cmd/jaeger@v$VERSION"
		CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$work/jaeger" github.com/jaegertracing/jaeger/cmd/jaeger
	)
	mkdir -p "$CACHE_DIR"
	cp "$work/jaeger" "$cached.tmp" && mv "$cached.tmp" "$cached"
fi
cp "$cached" "$BIN_DIR/jaeger.tmp" && mv "$BIN_DIR/jaeger.tmp" "$BIN_DIR/jaeger"
echo "jaeger v$VERSION: installed into $BIN_DIR"
