#!/usr/bin/env bash
# fuzz.sh FUZZTIME: each fuzz target of the module for FUZZTIME, on top of its
# committed seed corpus; then those of the packages over latch's sockets
# again, built with faults under the sockets (-tags sockfault:
# gateway/internal/sockio/fault.go). `make fuzz` runs it; `make test` with 3s.
#
# A failure prints the end of go test's output. A finding is an input: go
# test writes it to the package's testdata/fuzz/<target>/, and this script
# runs it again as a test (three times), so the failure is shown twice and
# fails the run. A failure that left no input (a worker that died outside
# the target, a coordinator timeout) fails the run only if the target's seeds
# fail as a plain test; else it is printed as NOT REPRODUCED, with the log,
# and the run goes on: no input shows it again.
set -euo pipefail
fuzztime=${1:-3s}
GO=${GO:-go}
log=$(mktemp)
trap 'rm -f "$log"' EXIT

# corpus lists a target's saved inputs, one path a line.
corpus() { ls "$1/testdata/fuzz/$2" 2>/dev/null | sort || true; }

fuzz() {
	local tags=$1; shift
	for pkg in "$@"; do
		local dir
		dir=$($GO list -tags "$tags" -f '{{.Dir}}' "$pkg")
		for t in $($GO test -tags "$tags" -list '^Fuzz' "$pkg" 2>/dev/null | grep '^Fuzz' || true); do
			echo "fuzz $pkg $t ${tags:+-tags $tags }($fuzztime)"
			local before
			before=$(corpus "$dir" "$t")
			if $GO test -tags "$tags" -run '^$' -fuzz "^$t\$" -fuzztime "$fuzztime" "$pkg" >"$log" 2>&1; then
				continue
			fi
			tail -n 60 "$log"
			local found
			found=$(comm -13 <(echo "$before") <(corpus "$dir" "$t") | head -n 1)
			if [ -z "$found" ]; then
				# No new input: the seeds (f.Add and testdata) run as a test
				# must still pass, else a seed is the finding.
				if ! $GO test -tags "$tags" -count=1 -run "^$t\$" "$pkg" >"$log" 2>&1; then
					tail -n 40 "$log"
					echo "fuzz $t failed on its seed corpus: rerun: go test ${tags:+-tags $tags }-run '^$t\$' $pkg"
					exit 1
				fi
				echo "fuzz $t: NOT REPRODUCED: go test failed but saved no input (above), and the seeds pass; rerun: go test ${tags:+-tags $tags }-run '^\$' -fuzz '^$t\$' $pkg"
				continue
			fi
			echo "fuzz $t found $dir/testdata/fuzz/$t/$found; running it again:"
			if $GO test -tags "$tags" -count=3 -run "^$t/$found\$" "$pkg" >"$log" 2>&1; then
				tail -n 20 "$log"
				echo "fuzz $t: the input passes when run again (three times): a failure that depends on timing; kept in testdata, failing the run"
			else
				tail -n 40 "$log"
			fi
			echo "fuzz $t failed: rerun: go test ${tags:+-tags $tags }-run '^$t/$found\$' $pkg"
			exit 1
		done
	done
}

fuzz "" $($GO list ./...)
fuzz sockfault $($GO list -tags sockfault -f '{{.ImportPath}}{{range .Deps}} {{.}}{{end}}' ./... | grep 'internal/sockio' | cut -d' ' -f1)
