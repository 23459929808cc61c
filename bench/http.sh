#!/usr/bin/env bash
# Hello-world HTTP/1.1 throughput, all servers in one run, loopback only:
#   tipi -w 1, tipi -w 2, puma (single, -t 1:16), puma -w 2 (-t 1:16), and nginx `return 200`
#   as the ceiling; wrk -t2 -c50 for DURATION seconds each, keep-alive then Connection: close.
# Prints req/s, p99 latency and the RSS of each server's processes after its runs, then the
# ratios the Tipi issue asks about. wrk shares the 2 cores with the server under test.
#
# Usage: bench/http.sh [DURATION]   (default 10 seconds per run; needs bin/setup's wrk, puma, nginx)
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${1:-10}
for tool in wrk puma nginx; do
  command -v "$tool" >/dev/null || [ -x "/usr/sbin/$tool" ] || { echo "bench/http.sh: $tool missing (run bin/setup)" >&2; exit 1; }
done
work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

port=$((20000 + RANDOM % 20000))

# Waits until something answers on $1.
await_port() {
  for _ in $(seq 100); do
    curl -s -o /dev/null "http://127.0.0.1:$1/" && return 0
    sleep 0.1
  done
  echo "bench/http.sh: nothing answers on port $1" >&2
  exit 1
}

# RSS in MB of process $1 and its children.
rss_mb() {
  { ps -o rss= -p "$1" || true; ps -o rss= --ppid "$1" || true; } | awk '{ kb += $1 } END { printf "%.0f", kb / 1024 }'
}

# Runs wrk against $1 with extra args; prints "req/s p99_ms".
run_wrk() {
  local port=$1; shift
  wrk -t2 -c50 -d"${duration}s" --latency "$@" "http://127.0.0.1:$port/" |
    awk '/Requests\/sec/ { rps = $2 }
         / 99%/ { v = $2; ms = v + 0;
                  if (v ~ /us$/) ms = v / 1000; else if (v ~ /ms$/) ms = v + 0; else if (v ~ /s$/) ms = v * 1000;
                  p99 = ms }
         /Non-2xx|Socket errors/ { errors = errors " [" $0 "]" }
         END { printf "%.0f %.2f%s\n", rps, p99, errors }'
}

declare -A result
bench() {
  local name=$1 port=$2 pid=$3
  await_port "$port"
  wrk -t2 -c50 -d1s "http://127.0.0.1:$port/" >/dev/null # warm-up
  result[$name,ka]=$(run_wrk "$port")
  result[$name,close]=$(run_wrk "$port" -H 'Connection: close')
  result[$name,rss]=$(rss_mb "$pid")
  kill -TERM "$pid"
  wait "$pid" 2>/dev/null || true
}

start() { # name, command...
  local name=$1; shift
  port=$((port + 1))
  "$@" >"$work/$name.log" 2>&1 &
  pids+=($!)
  bench "$name" "$port" $!
}

start "tipi -w 1" exe/tipi -q -e production -w 1 -l 127.0.0.1:$((port + 1)) bench/hello.ru
start "tipi -w 2" exe/tipi -q -e production -w 2 -l 127.0.0.1:$((port + 1)) bench/hello.ru
start "puma" puma -q -e production -t 1:16 -b tcp://127.0.0.1:$((port + 1)) bench/hello.ru
start "puma -w 2" puma -q -e production -w 2 -t 1:16 -b tcp://127.0.0.1:$((port + 1)) bench/hello.ru
cat >"$work/nginx.conf" <<NGINX
daemon off;
worker_processes 2;
pid $work/nginx.pid;
error_log $work/nginx-error.log;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path $work; proxy_temp_path $work; fastcgi_temp_path $work;
  uwsgi_temp_path $work; scgi_temp_path $work;
  server {
    listen 127.0.0.1:$((port + 1));
    location / { default_type text/plain; return 200 'Hello'; }
  }
}
NGINX
start "nginx" /usr/sbin/nginx -c "$work/nginx.conf" -e "$work/nginx-error.log"

printf '\n%-10s %14s %10s %14s %10s %8s\n' server 'keep-alive r/s' 'p99 ms' 'close r/s' 'p99 ms' 'RSS MB'
for name in "tipi -w 1" "tipi -w 2" "puma" "puma -w 2" "nginx"; do
  read -r ka_rps ka_p99 ka_err <<<"${result[$name,ka]}"
  read -r cl_rps cl_p99 cl_err <<<"${result[$name,close]}"
  printf '%-10s %14s %10s %14s %10s %8s %s\n' "$name" "$ka_rps" "$ka_p99" "$cl_rps" "$cl_p99" "${result[$name,rss]}" \
    "${ka_err:-}${cl_err:-}"
done
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
t2ka=${result[tipi -w 2,ka]%% *}; t2cl=${result[tipi -w 2,close]%% *}
pka=${result[puma -w 2,ka]%% *}; pcl=${result[puma -w 2,close]%% *}
nka=${result[nginx,ka]%% *}; ncl=${result[nginx,close]%% *}
echo
echo "tipi -w 2 / puma -w 2, keep-alive:      $(ratio "$t2ka" "$pka")x   (goal >= 2.5)"
echo "tipi -w 2 / puma -w 2, Connection close: $(ratio "$t2cl" "$pcl")x"
echo "tipi -w 2 / nginx, keep-alive:          $(ratio "$t2ka" "$nka")   (goal >= 0.70)"
echo "tipi -w 2 / nginx, Connection close:    $(ratio "$t2cl" "$ncl")   (goal >= 0.85)"
