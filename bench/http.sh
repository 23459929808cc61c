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
scheme=http
port=$((20000 + RANDOM % 10000)) # below the ephemeral ports (32768-) wrk connects from
# shellcheck source=bench/lib/wrk.sh
source bench/lib/wrk.sh
require_tools wrk puma nginx

start "tipi -w 1" exe/tipi -q -e production -w 1 -l 127.0.0.1:$((port + 1)) bench/hello.ru
start "tipi -w 2" exe/tipi -q -e production -w 2 -l 127.0.0.1:$((port + 1)) bench/hello.ru
start "puma" puma -q -e production -t 1:16 -b tcp://127.0.0.1:$((port + 1)) bench/hello.ru
start "puma -w 2" puma -q -e production -w 2 -t 1:16 -b tcp://127.0.0.1:$((port + 1)) bench/hello.ru
nginx_conf $((port + 1)) "" ""
start "nginx" /usr/sbin/nginx -c "$work/nginx.conf" -e "$work/nginx-error.log"

table "tipi -w 1" "tipi -w 2" "puma" "puma -w 2" "nginx"
t2ka=${result[tipi -w 2,ka]%% *}; t2cl=${result[tipi -w 2,close]%% *}
pka=${result[puma -w 2,ka]%% *}; pcl=${result[puma -w 2,close]%% *}
nka=${result[nginx,ka]%% *}; ncl=${result[nginx,close]%% *}
echo
echo "tipi -w 2 / puma -w 2, keep-alive:      $(ratio "$t2ka" "$pka")x   (goal >= 2.5)"
echo "tipi -w 2 / puma -w 2, Connection close: $(ratio "$t2cl" "$pcl")x"
echo "tipi -w 2 / nginx, keep-alive:          $(ratio "$t2ka" "$nka")   (goal >= 0.70)"
echo "tipi -w 2 / nginx, Connection close:    $(ratio "$t2cl" "$ncl")   (goal >= 0.85)"
