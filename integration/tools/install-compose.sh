#!/usr/bin/env bash
# Installs Docker Compose v2 as the docker CLI plugin (`docker compose`).
#
# Debian ships only Compose v1 (docker-compose 1.29), which rejects the
# repository's compose file (top-level `name`), and no registry is reachable,
# so v2 is built from its Go module (github.com/docker/compose/v2), the way
# install-consul.sh builds Consul: about 4 minutes once, then cached in
# ~/.cache/latch and copied.
#
# Idempotent: nothing is done when the plugin already reports the pinned version.
set -euo pipefail

VERSION="${COMPOSE_VERSION:-2.40.3}"
PLUGIN_DIR="${1:-${DOCKER_CONFIG:-$HOME/.docker}/cli-plugins}"
CACHE_DIR="${LATCH_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/latch}"
mkdir -p "$PLUGIN_DIR"

have_version() {
	[ -x "$1" ] && [[ "$("$1" version --short 2>/dev/null)" == "$VERSION" ]]
}

if have_version "$PLUGIN_DIR/docker-compose"; then
	exit 0
fi
if have_version "$CACHE_DIR/docker-compose-$VERSION"; then
	cp "$CACHE_DIR/docker-compose-$VERSION" "$PLUGIN_DIR/docker-compose"
	echo "docker compose v$VERSION: copied from $CACHE_DIR"
	exit 0
fi

echo "docker compose v$VERSION: building from the Go module (about 4 minutes the first time)"
# shellcheck source=gomod-build.sh
. "$(dirname "$0")/gomod-build.sh"
# Its exclude directives (for Kubernetes' dependencies) make -mod=mod fail.
GOMOD_DROP_EXCLUDES=1 gomod_build github.com/docker/compose/v2 "$VERSION" ./cmd "$PLUGIN_DIR/docker-compose" \
	"-X github.com/docker/compose/v2/internal.Version=v$VERSION"
mkdir -p "$CACHE_DIR" && cp "$PLUGIN_DIR/docker-compose" "$CACHE_DIR/docker-compose-$VERSION"
echo "docker compose v$VERSION: installed as $PLUGIN_DIR/docker-compose"
