#!/usr/bin/env bash
# `make demo`: a Consul dev agent, Redis, three demo backends and latch on
# this machine, no Docker. Ctrl-C (or SIGTERM) stops everything it started.
#
#   curl -i localhost:8080/                      # a new session each time
#   curl -b /tmp/jar -c /tmp/jar localhost:8080/ # sticky: same backend every time
#   curl localhost:9090/admin/backends           # admin API
#   open http://localhost:8500/ui                # Consul UI
#
# Ports: LATCH_DEMO_HTTP (8080), LATCH_DEMO_ADMIN (9090), LATCH_DEMO_CONSUL (8500),
# LATCH_DEMO_REDIS (6380), backends LATCH_DEMO_BACKEND_BASE+1..3 (8081..8083);
# LATCH_DEMO_CHECK_INTERVAL (2s) is the backends' Consul check interval.
set -euo pipefail
cd "$(dirname "$0")/../.."

HTTP_PORT="${LATCH_DEMO_HTTP:-8080}"
ADMIN_PORT="${LATCH_DEMO_ADMIN:-9090}"
CONSUL_PORT="${LATCH_DEMO_CONSUL:-8500}"
REDIS_PORT="${LATCH_DEMO_REDIS:-6380}"
BASE="${LATCH_DEMO_BACKEND_BASE:-8080}"
BIN="${LATCH_BIN:-./bin}" # where `make build` put latch and demo-backend
PATH="$PWD/.tools/bin:$PATH"

dir="$(mktemp -d -t latch-demo.XXXXXX)"
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

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for p in "$HTTP_PORT" "$ADMIN_PORT" "$CONSUL_PORT" "$REDIS_PORT" $((BASE + 1)) $((BASE + 2)) $((BASE + 3)); do
	port_free "$p" || { echo "demo: port $p is in use (set LATCH_DEMO_* to move the demo)" >&2; exit 1; }
done

# wait_for NAME LOG PID COMMAND...: up to 30s for COMMAND to succeed while
# process PID runs ("" LOG: its log is on the terminal).
wait_for() {
	local name="$1" log="$2" pid="$3"; shift 3
	for _ in $(seq 1 150); do
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

consul agent -dev -bind 127.0.0.1 -client 127.0.0.1 -http-port "$CONSUL_PORT" -grpc-port -1 \
	-dns-port -1 -serf-lan-port $((CONSUL_PORT + 1)) -serf-wan-port $((CONSUL_PORT + 2)) \
	-server-port $((CONSUL_PORT + 3)) -data-dir "$dir/consul" >"$dir/consul.log" 2>&1 &
pids+=($!)
export CONSUL_HTTP_ADDR="127.0.0.1:$CONSUL_PORT"
wait_for consul "$dir/consul.log" "${pids[-1]}" consul members

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

secret="${LATCH_COOKIE_SECRET:-demo-secret-0123456789abcdef}"
"$BIN/latch" -listen ":$HTTP_PORT" -admin-listen "127.0.0.1:$ADMIN_PORT" -service web \
	-redis "redis://127.0.0.1:$REDIS_PORT/0" -cookie-secret "$secret" &
pids+=($!)
wait_for latch "" "${pids[-1]}" curl -sf -m 2 "http://127.0.0.1:$ADMIN_PORT/readyz"

cat <<MSG

latch demo is up (logs of the other parts in $dir):
  curl -i localhost:$HTTP_PORT/                                # new session, balanced
  curl -b /tmp/latch-jar -c /tmp/latch-jar localhost:$HTTP_PORT/  # sticky
  curl localhost:$ADMIN_PORT/admin/backends                    # backends, breakers, sessions
  Consul UI: http://localhost:$CONSUL_PORT/ui
Ctrl-C stops it.

MSG
wait "${pids[-1]}"
