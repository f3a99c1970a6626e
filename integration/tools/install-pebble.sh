#!/usr/bin/env bash
# Builds Let's Encrypt's ACME test server, pebble, and its companion DNS
# server, pebble-challtestsrv, for the ACME integration test.
#
# Both are commands of one Go module (github.com/letsencrypt/pebble/v2) that
# `go install` builds as it is. Idempotent: nothing is done when $BIN_DIR
# holds the pinned version; a per-user cache (~/.cache/latch) makes fresh
# clones on the same machine skip the build (about a minute once).
set -euo pipefail

VERSION="${PEBBLE_VERSION:-2.10.3}"
BIN_DIR="${1:?usage: install-pebble.sh BIN_DIR}"
CACHE_DIR="${LATCH_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/latch}"
mkdir -p "$BIN_DIR"

# pebble prints its version (stamped below); pebble-challtestsrv has no
# -version flag, so it is taken as current when it is the cached build of
# the same version.
have_version() { # DIR SUFFIX
	[ -x "$1/pebble$2" ] && [ -x "$1/pebble-challtestsrv$2" ] &&
		[[ "$("$1/pebble$2" -version 2>/dev/null)" == "Pebble version: v${VERSION}" ]]
}

if have_version "$BIN_DIR" "" && have_version "$CACHE_DIR" "-$VERSION" &&
	cmp -s "$BIN_DIR/pebble-challtestsrv" "$CACHE_DIR/pebble-challtestsrv-$VERSION"; then
	exit 0
fi
if ! have_version "$CACHE_DIR" "-$VERSION"; then
	echo "pebble v$VERSION: building from the Go module (about a minute the first time)"
	work="$(mktemp -d)"
	trap 'rm -rf "$work"' EXIT
	GOBIN="$work" CGO_ENABLED=0 go install -trimpath \
		-ldflags "-s -w -X main.version=v$VERSION" \
		"github.com/letsencrypt/pebble/v2/cmd/pebble@v$VERSION" \
		"github.com/letsencrypt/pebble/v2/cmd/pebble-challtestsrv@v$VERSION"
	mkdir -p "$CACHE_DIR"
	for b in pebble pebble-challtestsrv; do
		cp "$work/$b" "$CACHE_DIR/$b-$VERSION.tmp" && mv "$CACHE_DIR/$b-$VERSION.tmp" "$CACHE_DIR/$b-$VERSION"
	done
fi
for b in pebble pebble-challtestsrv; do
	cp "$CACHE_DIR/$b-$VERSION" "$BIN_DIR/$b.tmp" && mv "$BIN_DIR/$b.tmp" "$BIN_DIR/$b"
done
echo "pebble v$VERSION: installed into $BIN_DIR"
