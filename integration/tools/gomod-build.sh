#!/usr/bin/env bash
# Sourced by install-consul.sh and install-compose.sh: builds a command from a
# published Go module whose go.mod `go install` refuses (replace or exclude
# directives). The module is copied out of the module cache, its replace and
# replace directives are dropped (and its exclude directives too when
# GOMOD_DROP_EXCLUDES=1), and it is built with -mod=mod against the published
# versions of what it requires.
#
#   gomod_build MODULE VERSION PACKAGE OUTPUT [LDFLAGS]
#
# PACKAGE is relative to the module root ("." or "./cmd"); OUTPUT is written
# atomically (built beside it, then renamed).
gomod_build() {
	local module="$1" version="$2" pkg="$3" out="$4" ldflags="${5:-}"
	local work src
	work="$(mktemp -d)"
	# shellcheck disable=SC2064 # expand $work now: the trap outlives this function
	trap "chmod -R u+w '$work' 2>/dev/null; rm -rf '$work'" EXIT

	src="$(cd "$work" && GOFLAGS=-mod=mod go mod download -json "$module@v$version" |
		sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
	[ -d "$src" ] || { echo "gomod_build: downloading $module@v$version failed" >&2; return 1; }
	cp -r "$src" "$work/src"
	chmod -R u+w "$work/src"
	(
		cd "$work/src"
		# Every replace directive (and exclude directive, when asked),
		# single-line and block form; comment lines inside a block are skipped.
		for old in $(awk '/^replace \(/{b=1;next} b&&/^\)/{b=0} b&&$1!~/^\/\//{print $1} /^replace [^(]/{print $2}' go.mod); do
			go mod edit -dropreplace="$old"
		done
		[ "${GOMOD_DROP_EXCLUDES:-}" != 1 ] ||
			awk '/^exclude \(/{b=1;next} b&&/^\)/{b=0} b&&$1!~/^\/\//{print $1"@"$2} /^exclude [^(]/{print $2"@"$3}' go.mod |
				while read -r ex; do go mod edit -dropexclude="$ex"; done
		GOFLAGS=-mod=mod CGO_ENABLED=0 go build -trimpath -ldflags "-s -w $ldflags" -o "$out.tmp" "$pkg"
	)
	mv "$out.tmp" "$out"
}
