#!/usr/bin/env bash
# Makes, from what this machine has, the images that docker-compose.yml and
# the Dockerfile name, tagged with those same names, when no registry can be
# pulled from. Each is a stand-in, labelled org.latchgw.standin=<recipe>:
#
#   hashicorp/consul:1.22                  Consul built from its Go module (make tools), FROM scratch,
#                                          `consul` as its entrypoint, /consul/data for its state
#   redis:7-alpine                         Debian's redis-server and redis-cli with the libraries ldd lists
#   golang:1.26-bookworm                   this machine's Go in /usr/local/go, Debian's busybox-static
#                                          as /bin/sh and friends, its CA certificates, and go.sum's
#                                          modules as a file proxy tried before the network
#   gcr.io/distroless/static-debian12:nonroot   /etc/passwd with nonroot (65532), CA certificates, tzdata
#   jaegertracing/jaeger:2.12.0            Jaeger v2 built from its Go module v1.75.0 (make tools), FROM
#                                          scratch, `jaeger` as its entrypoint (the tracing profile)
#
# An image of that name without the label (a real one, pulled) is left alone.
# One whose label matches the recipe is kept, so a second run costs seconds.
# Prints one line per stand-in: made, or already there.
set -euo pipefail

REPO="$(cd "$(dirname "$0")/../.." && pwd)"
LABEL=org.latchgw.standin
CONSUL_BIN="${CONSUL_BIN:-$REPO/.tools/bin/consul}"
JAEGER_BIN="${JAEGER_BIN:-$REPO/.tools/bin/jaeger}"
GOROOT_DIR="$(go env GOROOT)"
GO_VERSION="$(go env GOVERSION)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# ensure NAME RECIPE BUILD_FUNCTION: builds NAME unless it is there already.
ensure() {
	local name="$1" recipe="$2" build="$3" have
	if ! have="$(docker image inspect -f "{{index .Config.Labels \"$LABEL\"}}" "$name" 2>/dev/null)"; then
		have="missing"
	fi
	case "$have" in
	"$recipe") echo "stand-in $name: already made ($recipe)" ;;
	"" | "<no value>") echo "image $name: a real one is there, kept" ;;
	*)
		local t0=$SECONDS
		"$build" "$name" "$recipe"
		echo "stand-in $name: made ($recipe, $((SECONDS - t0))s)"
		;;
	esac
}

# import_dir DIR NAME RECIPE CHANGE...: a single-layer image of DIR.
import_dir() {
	local dir="$1" name="$2" recipe="$3"
	shift 3
	local changes=(-c "LABEL $LABEL=$recipe")
	for c in "$@"; do changes+=(-c "$c"); done
	tar --numeric-owner -C "$dir" -c . | docker import "${changes[@]}" - "$name" >/dev/null
}

consul_image() {
	local root="$work/consul"
	mkdir -p "$root/bin" "$root/consul/data" "$root/consul/config" "$root/tmp"
	chmod 1777 "$root/tmp"
	cp "$CONSUL_BIN" "$root/bin/consul"
	import_dir "$root" "$1" "$2" 'ENV PATH=/bin' 'ENTRYPOINT ["/bin/consul"]' \
		'CMD ["agent", "-dev", "-client", "0.0.0.0"]' 'EXPOSE 8300 8301 8500 8600'
}

# Jaeger is a static Go binary; its in-memory storage needs no file system
# but /tmp.
jaeger_image() {
	local root="$work/jaeger"
	mkdir -p "$root/tmp"
	chmod 1777 "$root/tmp"
	cp "$JAEGER_BIN" "$root/jaeger"
	import_dir "$root" "$1" "$2" 'USER 10001' 'ENTRYPOINT ["/jaeger"]' 'EXPOSE 4317 4318 16686'
}

redis_image() {
	local root="$work/redis" lib
	mkdir -p "$root/usr/local/bin" "$root/data" "$root/tmp"
	chmod 1777 "$root/tmp"
	# Debian's redis-server is redis-check-rdb under another name (argv[0]).
	cp -L "$(command -v redis-server)" "$root/usr/local/bin/redis-server"
	cp -L "$(command -v redis-cli)" "$root/usr/local/bin/redis-cli"
	for lib in $(ldd "$root/usr/local/bin/redis-server" "$root/usr/local/bin/redis-cli" | grep -o '/[^ ]*' | grep -v ':$' | sort -u); do
		mkdir -p "$root$(dirname "$lib")"
		cp -L "$lib" "$root$lib"
	done
	import_dir "$root" "$1" "$2" 'ENV PATH=/usr/local/bin' 'WORKDIR /data' 'CMD ["redis-server"]' 'EXPOSE 6379'
}

# The Dockerfile's build stage needs Go, a shell for RUN and mkdir: this
# machine's Go and Debian's busybox-static (sh, mkdir, ...), not a whole
# Debian root file system (debootstrap took 20 minutes here, mostly download).
golang_image() {
	local root="$work/golang" applet
	command -v busybox >/dev/null || {
		echo "installing busybox-static"
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq busybox-static >/dev/null
	}
	mkdir -p "$root/bin" "$root/etc/ssl/certs" "$root/tmp" "$root/root" "$root/usr/local" "$root/go/bin" "$root/go/src"
	chmod 1777 "$root/tmp"
	cp -L "$(command -v busybox)" "$root/bin/busybox"
	for applet in $(busybox --list); do
		[ -e "$root/bin/$applet" ] || ln -s busybox "$root/bin/$applet"
	done
	printf '%s\n' 'root:x:0:0:root:/root:/bin/sh' >"$root/etc/passwd"
	printf '%s\n' 'root:x:0:' >"$root/etc/group"
	# This machine's trust store: it reaches the Go module proxy through
	# whatever certificate authorities it trusts, so the build does too.
	cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
	cp -a "$GOROOT_DIR" "$root/usr/local/go"
	# The modules go.mod names, as a file-based module proxy the build tries
	# first: a container that cannot reach the Go module proxy still builds.
	# Taken from this machine's module cache (downloaded there when missing).
	GOFLAGS=-mod=mod GOMODCACHE="$work/modcache" GOPROXY="file://$(go env GOMODCACHE)/cache/download,$(go env GOPROXY)" \
		go -C "$REPO" mod download
	mkdir -p "$root/go/proxy"
	cp -a "$work/modcache/cache/download/." "$root/go/proxy/"
	chmod -R u+w "$work/modcache"
	import_dir "$root" "$1" "$2" "ENV GOLANG_VERSION=${GO_VERSION#go}" 'ENV GOPATH=/go' \
		'ENV PATH=/go/bin:/usr/local/go/bin:/bin' 'ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt' \
		'ENV GOPROXY=file:///go/proxy,https://proxy.golang.org,direct' 'WORKDIR /go'
}

distroless_image() {
	local root="$work/distroless"
	mkdir -p "$root/etc/ssl/certs" "$root/usr/share" "$root/tmp" "$root/home/nonroot" "$root/root"
	chmod 1777 "$root/tmp"
	chown 65532:65532 "$root/home/nonroot"
	printf '%s\n' 'root:x:0:0:root:/root:/sbin/nologin' 'nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin' \
		'nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin' >"$root/etc/passwd"
	printf '%s\n' 'root:x:0:' 'nobody:x:65534:' 'tty:x:5:' 'staff:x:50:' 'nonroot:x:65532:' >"$root/etc/group"
	cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/"
	cp -a /usr/share/zoneinfo "$root/usr/share/zoneinfo"
	import_dir "$root" "$1" "$2" 'USER 65532' 'WORKDIR /home/nonroot' \
		'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
		'ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt'
}

[ -x "$CONSUL_BIN" ] || { echo "images: no consul at $CONSUL_BIN (make tools builds it)" >&2; exit 1; }
[ -x "$JAEGER_BIN" ] || { echo "images: no jaeger at $JAEGER_BIN (make tools builds it)" >&2; exit 1; }
jaeger_version="$(sha256sum "$JAEGER_BIN" | cut -c1-12)"
consul_version="$("$CONSUL_BIN" version | sed -n '1s/^Consul v//p')"
redis_version="$(redis-server --version | sed -n 's/.* v=\([^ ]*\).*/\1/p')"

ensure hashicorp/consul:1.22 "consul-$consul_version-scratch-v1" consul_image
ensure redis:7-alpine "debian-redis-$redis_version-v1" redis_image
ensure golang:1.26-bookworm "busybox-$GO_VERSION-modproxy-$(sha256sum "$REPO/go.sum" | cut -c1-12)-v1" golang_image
ensure gcr.io/distroless/static-debian12:nonroot "scratch-passwd-certs-tzdata-v1" distroless_image
ensure jaegertracing/jaeger:2.12.0 "jaeger-$jaeger_version-scratch-v1" jaeger_image
