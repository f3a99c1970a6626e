#!/usr/bin/env bash
# Sourced by demo.sh: the Consul versions latch supports (README, "Supported
# versions"), in one place. The newest is the pinned one `make consul`
# builds (install-consul.sh) and `make test` runs; the oldest is the one
# `make compat` builds and runs (Makefile: CONSUL_OLDEST).
CONSUL_SUPPORTED_MIN=1.20.1   # oldest supported (1.20.0 does not build from its module: it requires consul/troubleshoot v0.7.2, which the Go module proxy does not serve)
CONSUL_SUPPORTED_BELOW=1.23.0 # first unsupported

# consul_version BIN: prints BIN's version ("1.22.0"), or nothing.
consul_version() {
	"$1" version 2>/dev/null | sed -n '1s/^Consul v\([0-9][0-9.]*\).*/\1/p'
}

# version_supported V: whether CONSUL_SUPPORTED_MIN <= V < CONSUL_SUPPORTED_BELOW.
version_supported() {
	local v="$1"
	[ -n "$v" ] || return 1
	[ "$(printf '%s\n%s\n' "$CONSUL_SUPPORTED_MIN" "$v" | sort -V | head -n1)" = "$CONSUL_SUPPORTED_MIN" ] &&
		[ "$(printf '%s\n%s\n' "$v" "$CONSUL_SUPPORTED_BELOW" | sort -V | head -n1)" = "$v" ] &&
		[ "$v" != "$CONSUL_SUPPORTED_BELOW" ]
}
