#!/usr/bin/env bash
# CPU per `Connection: close` request, tipi -w 2 against nginx (2 workers) in the same run:
# each server in turn (alternating which goes first) under wrk -t2 -c50 -H 'Connection: close'
# for DURATION seconds, ROUNDS times; the CPU is user + system of all the server's processes,
# from /proc (steadier than req/s on 2 shared cores). Prints each run, the medians and the
# ratio tipi / nginx (issue 23's goal: at most 1.5).
#
# Usage: bench/close_cpu.sh [ROUNDS] [DURATION]   (defaults: 6 rounds of 8 seconds)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-6}
duration=${2:-8}
scheme=http
port=$((20000 + RANDOM % 10000))
# shellcheck source=bench/lib/wrk.sh
source bench/lib/wrk.sh
require_tools wrk nginx

# run NAME: one server's run; prints "req/s us_per_request".
run() {
  local name=$1 pid before after out
  port=$((port + 1))
  if [ "$name" = tipi ]; then
    exe/tipi -q -e production -w 2 -l "127.0.0.1:$port" bench/hello.ru >"$work/tipi.log" 2>&1 &
  else
    nginx_conf "$port" "" ""
    /usr/sbin/nginx -c "$work/nginx.conf" -e "$work/nginx-error.log" >"$work/nginx.log" 2>&1 &
  fi
  pid=$!
  pids+=("$pid")
  await_port "$port"
  wrk -t2 -c50 -d1s -H 'Connection: close' "$scheme://127.0.0.1:$port/" >/dev/null # warm-up
  before=$(ticks "$pid")
  out=$(wrk -t2 -c50 -d"${duration}s" -H 'Connection: close' "$scheme://127.0.0.1:$port/")
  after=$(ticks "$pid")
  kill -TERM "$pid"
  wait "$pid" 2>/dev/null || true
  awk -v t=$((after - before)) -v hz="$hz" '
    /Requests\/sec/ { rps = $2 } /requests in/ { n = $1 }
    END { printf "%.0f %.1f\n", rps, t / hz * 1e6 / n }' <<<"$out"
}

printf '\n%-6s %-6s %10s %12s\n' round server 'req/s' 'CPU us/req'
for round in $(seq "$rounds"); do
  if [ $((round % 2)) -eq 1 ]; then order="tipi nginx"; else order="nginx tipi"; fi
  for name in $order; do
    read -r rps us <<<"$(run "$name")"
    printf '%-6s %-6s %10s %12s\n' "$round" "$name" "$rps" "$us"
    echo "$us" >>"$work/$name-us"
  done
done
echo
t=$(median <"$work/tipi-us")
n=$(median <"$work/nginx-us")
echo "medians over $rounds rounds: tipi $t us/request, nginx $n us/request"
echo "tipi / nginx, CPU per Connection: close request: $(ratio "$t" "$n")   (goal <= 1.5)"
