#!/usr/bin/env bash
# `make demo`: a Consul dev agent, Redis, three demo backends and latch on
# this machine, no Docker. Ctrl-C (or SIGTERM) stops everything it started.
# `demo.sh --check-ports` only checks that its ports are free;
# `demo.sh --which-consul` only says which Consul it would use.
#
# Its Consul (README, "Your own Consul"), the first of:
#   LATCH_DEMO_CONSUL_ADDR=host:port  an agent already running (yours): the
#                          demo starts none, registers its backends there
#                          and deregisters them when it stops; a token, if
#                          the agent has ACLs on: CONSUL_HTTP_TOKEN
#   CONSUL_BIN=/path       that binary; refused outside the supported range
#   a `consul` on PATH     when its version is supported (else skipped, saying so)
#   .tools/bin/consul      the pinned one, built by `make consul` when missing
# Supported versions: integration/tools/consul-range.sh.
#
# Ports, and the variables that move them (all on 127.0.0.1 but latch's
# public listener, which is on every address, as latch's default is):
#   8080       latch, public                    LATCH_DEMO_HTTP
#   9090       latch admin API                  LATCH_DEMO_ADMIN
#   8500       Consul HTTP API and UI           LATCH_DEMO_CONSUL
#   8501-8503  Consul serf LAN, serf WAN (TCP and UDP), server RPC: CONSUL+1..+3
#   6380       Redis                            LATCH_DEMO_REDIS
#   8081-8083  the demo backends web-1..3       LATCH_DEMO_BACKEND_BASE (8080) +1..+3
# Consul's DNS, HTTPS, gRPC and gRPC-TLS listeners are off (a -dev agent
# would otherwise also take 8600 and 8502-8503). LATCH_DEMO_CHECK_INTERVAL
# (2s) is the backends' Consul check interval.
#
# LATCH_CONFIG=file.yaml: latch reads that config file (docs/configuration.md,
# "The configuration file"), which then says what to route: the demo passes no -service, and
# its backends are the Consul service `web`. The demo's own flags (listen
# addresses, Redis, cookie secret) win over the file. The file is checked
# (latch -check-config) before anything starts.
set -euo pipefail
if [ -n "${LATCH_CONFIG:-}" ]; then
	# A path relative to where the user ran make, before the cd below.
	LATCH_CONFIG="$(realpath -- "$LATCH_CONFIG")"
	export LATCH_CONFIG
fi
cd "$(dirname "$0")/../.."

HTTP_PORT="${LATCH_DEMO_HTTP:-8080}"
ADMIN_PORT="${LATCH_DEMO_ADMIN:-9090}"
CONSUL_PORT="${LATCH_DEMO_CONSUL:-8500}"
REDIS_PORT="${LATCH_DEMO_REDIS:-6380}"
BASE="${LATCH_DEMO_BACKEND_BASE:-8080}"
BIN="${LATCH_BIN:-./bin}" # where `make build` put latch and demo-backend
TOOLS="$PWD/.tools/bin"   # where `make tools` put consul
# The user's PATH, without .tools/bin (the Makefile puts it first), to find
# their own consul before the pinned one.
USER_PATH="$(printf '%s' "$PATH" | tr ':' '\n' | grep -vxF "$TOOLS" | paste -sd: -)"
PATH="$TOOLS:$PATH"
CONSUL_ADDR="${LATCH_DEMO_CONSUL_ADDR:-}"
# shellcheck source=consul-range.sh
. integration/tools/consul-range.sh

# pick_consul: sets CONSUL to the binary to run (README, "Your own Consul").
pick_consul() {
	local v own
	if [ -n "${CONSUL_BIN:-}" ]; then
		v="$(consul_version "$CONSUL_BIN")"
		if ! version_supported "$v"; then
			echo "demo: CONSUL_BIN=$CONSUL_BIN is Consul ${v:-of unknown version}; supported: v$CONSUL_SUPPORTED_MIN up to (not including) v$CONSUL_SUPPORTED_BELOW" >&2
			return 1
		fi
		CONSUL="$CONSUL_BIN"
	elif own="$(PATH="$USER_PATH" command -v consul)" && v="$(consul_version "$own")" && version_supported "$v"; then
		CONSUL="$own"
	else
		if [ -n "$own" ]; then
			echo "demo: skipping $own (Consul ${v:-of unknown version}): supported: v$CONSUL_SUPPORTED_MIN up to (not including) v$CONSUL_SUPPORTED_BELOW" >&2
		fi
		bash integration/tools/install-consul.sh "$TOOLS" >&2
		CONSUL="$TOOLS/consul"
		v="$(consul_version "$CONSUL")"
	fi
	echo "demo: consul $CONSUL (v$v)" >&2
}
if [ "${1:-}" = "--which-consul" ]; then
	if [ -n "$CONSUL_ADDR" ]; then
		echo "demo: consul agent at $CONSUL_ADDR (LATCH_DEMO_CONSUL_ADDR)" >&2
		exit 0
	fi
	pick_consul
	exit 0
fi

# Every port the demo binds, as portcheck takes them: checked before
# anything starts.
ports=(
	"tcp :$HTTP_PORT LATCH_DEMO_HTTP latch (public)"
	"tcp 127.0.0.1:$ADMIN_PORT LATCH_DEMO_ADMIN latch admin API"
	"tcp 127.0.0.1:$REDIS_PORT LATCH_DEMO_REDIS Redis"
)
if [ -z "$CONSUL_ADDR" ]; then # else: the user's agent, already running
	ports+=(
		"tcp 127.0.0.1:$CONSUL_PORT LATCH_DEMO_CONSUL Consul HTTP"
		"tcp 127.0.0.1:$((CONSUL_PORT + 1)) LATCH_DEMO_CONSUL Consul serf LAN"
		"udp 127.0.0.1:$((CONSUL_PORT + 1)) LATCH_DEMO_CONSUL Consul serf LAN"
		"tcp 127.0.0.1:$((CONSUL_PORT + 2)) LATCH_DEMO_CONSUL Consul serf WAN"
		"udp 127.0.0.1:$((CONSUL_PORT + 2)) LATCH_DEMO_CONSUL Consul serf WAN"
		"tcp 127.0.0.1:$((CONSUL_PORT + 3)) LATCH_DEMO_CONSUL Consul server RPC"
	)
fi
for i in 1 2 3; do
	ports+=("tcp 127.0.0.1:$((BASE + i)) LATCH_DEMO_BACKEND_BASE demo backend web-$i")
done
secret="${LATCH_COOKIE_SECRET:-demo-secret-0123456789abcdef}"
latch_args=(-listen ":$HTTP_PORT" -admin-listen "127.0.0.1:$ADMIN_PORT"
	-redis "redis://127.0.0.1:$REDIS_PORT/0" -cookie-secret "$secret")
if [ -z "${LATCH_CONFIG:-}" ]; then
	latch_args+=(-service web)
fi
if ! "$BIN/latch" "${latch_args[@]}" -check-config >&2; then
	echo "demo: latch refuses its configuration; nothing was started" >&2
	exit 1
fi
dir="$(mktemp -d -t latch-demo.XXXXXX)"
go build -o "$dir/portcheck" ./integration/tools/portcheck
if ! "$dir/portcheck" "${ports[@]}" >&2; then
	if [ -z "$CONSUL_ADDR" ] && curl -sf -m 2 "http://127.0.0.1:$CONSUL_PORT/v1/status/leader" >/dev/null 2>&1; then
		echo "demo: a Consul agent already answers on 127.0.0.1:$CONSUL_PORT; to use it instead of starting one:" >&2
		echo "  LATCH_DEMO_CONSUL_ADDR=127.0.0.1:$CONSUL_PORT make demo" >&2
	fi
	echo "demo: nothing was started" >&2
	rm -rf "$dir"
	exit 1
fi
if [ "${1:-}" = "--check-ports" ]; then
	rm -rf "$dir"
	exit 0
fi
pids=()
cleanup() {
	trap - EXIT INT TERM
	echo "demo: stopping"
	# Newest first: latch, then backends (they deregister), then Redis, Consul.
	for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
		kill -TERM "${pids[i]}" 2>/dev/null || true
		wait "${pids[i]}" 2>/dev/null || true
	done
	rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 0' INT TERM

# wait_for NAME LOG PID COMMAND...: up to 60s for COMMAND to succeed while
# process PID runs ("" LOG: its log is on the terminal).
wait_for() {
	local name="$1" log="$2" pid="$3"; shift 3
	for _ in $(seq 1 300); do
		"$@" >/dev/null 2>&1 && return 0
		kill -0 "$pid" 2>/dev/null || break # exited: no use waiting
		sleep 0.2
	done
	# The log directory goes with the cleanup, so show the end of the log here.
	if [ -z "$log" ]; then
		echo "demo: $name did not come up (its log is above)" >&2
	else
		echo "demo: $name did not come up; the end of its log:" >&2
		tail -n 20 "$log" >&2 || true
	fi
	exit 1
}

if [ -n "$CONSUL_ADDR" ]; then
	# The user's agent: it must answer with a leader; its version is said
	# (agent:read allowing), as a binary's would be.
	export CONSUL_HTTP_ADDR="$CONSUL_ADDR"
	hdr=()
	[ -z "${CONSUL_HTTP_TOKEN:-}" ] || hdr=(-H "X-Consul-Token: $CONSUL_HTTP_TOKEN")
	if ! leader="$(curl -sf -m 5 "${hdr[@]}" "http://$CONSUL_ADDR/v1/status/leader")" || [ "$leader" = '""' ]; then
		echo "demo: no Consul agent with a leader answers at $CONSUL_ADDR (LATCH_DEMO_CONSUL_ADDR); nothing was started" >&2
		exit 1
	fi
	v="$(curl -sf -m 5 "${hdr[@]}" "http://$CONSUL_ADDR/v1/agent/self" | sed -n 's/.*"Version":"\([0-9][0-9.]*\)".*/\1/p' | head -n1)"
	if [ -z "$v" ]; then
		echo "demo: consul agent at $CONSUL_ADDR (version unknown: the token may lack agent:read)" >&2
	elif ! version_supported "$v"; then
		echo "demo: warning: the agent at $CONSUL_ADDR is Consul v$v; supported: v$CONSUL_SUPPORTED_MIN up to (not including) v$CONSUL_SUPPORTED_BELOW" >&2
	else
		echo "demo: consul agent at $CONSUL_ADDR (v$v)" >&2
	fi
	consul_ui="http://$CONSUL_ADDR/ui"
else
	pick_consul
	"$CONSUL" agent -dev -bind 127.0.0.1 -client 127.0.0.1 -http-port "$CONSUL_PORT" -https-port -1 \
		-grpc-port -1 -grpc-tls-port -1 -dns-port -1 \
		-serf-lan-port $((CONSUL_PORT + 1)) -serf-wan-port $((CONSUL_PORT + 2)) \
		-server-port $((CONSUL_PORT + 3)) -data-dir "$dir/consul" >"$dir/consul.log" 2>&1 &
	pids+=($!)
	export CONSUL_HTTP_ADDR="127.0.0.1:$CONSUL_PORT"
	wait_for consul "$dir/consul.log" "${pids[-1]}" "$CONSUL" members
	consul_ui="http://localhost:$CONSUL_PORT/ui"
fi

redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no --dir "$dir" >"$dir/redis.log" 2>&1 &
pids+=($!)
wait_for redis "$dir/redis.log" "${pids[-1]}" redis-cli -p "$REDIS_PORT" ping

for i in 1 2 3; do
	"$BIN/demo-backend" -addr "127.0.0.1:$((BASE + i))" -id "web-$i" -service web \
		-check-interval "${LATCH_DEMO_CHECK_INTERVAL:-2s}" \
		>"$dir/web-$i.log" 2>&1 &
	pids+=($!)
done
for i in 1 2 3; do
	wait_for "web-$i" "$dir/web-$i.log" "${pids[-4 + i]}" curl -sf -m 2 "http://127.0.0.1:$((BASE + i))/health"
done

"$BIN/latch" "${latch_args[@]}" &
pids+=($!)
wait_for latch "" "${pids[-1]}" curl -sf -m 2 "http://127.0.0.1:$ADMIN_PORT/readyz"

cat <<MSG

latch demo is up (logs of the other parts in $dir). In another terminal:
  curl -i localhost:$HTTP_PORT/                                        # a new session: balanced, cookie set
  curl -b /tmp/jar -c /tmp/jar localhost:$HTTP_PORT/                   # sticky: the same backend every time
  curl localhost:$ADMIN_PORT/admin/backends                             # health, weight, breaker, load, sessions
  Consul UI: $consul_ui
  Consul CLI (README, "Registering a backend"):
    export PATH="$TOOLS:\$PATH" CONSUL_HTTP_ADDR=$CONSUL_HTTP_ADDR
Ctrl-C stops everything it started.

MSG
wait "${pids[-1]}"
