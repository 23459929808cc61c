#!/usr/bin/env bash
# HTTP/2 hello-world, all servers in one run, loopback only: tipi -w 2 and nginx (2 workers),
# over h2c (prior knowledge) and over TLS (ALPN h2, one ECDSA certificate for both); and one
# process each of tipi and async-http (pure Ruby, bench/async_http_h2.rb) over h2c. With
# `h2load -t2 -c50 -m10 -D DURATION`. Prints req/s and the ratios issue 7 asks about.
#
# Usage: bench/h2.sh [DURATION]   (default 10 seconds per run; needs bin/setup's h2load, nginx)
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${1:-10}
scheme=http
port=$((20000 + RANDOM % 10000)) # below the ephemeral ports (32768-) h2load connects from
# shellcheck source=bench/lib/wrk.sh
source bench/lib/wrk.sh
require_tools h2load nginx

self_signed_certificate

declare -A rps
# h2 NAME URL PID: runs h2load against URL, then stops PID.
h2() {
  local name=$1 url=$2 pid=$3
  for _ in $(seq 100); do curl -sk --http2-prior-knowledge -o /dev/null "$url" 2>/dev/null && break
                          curl -sk -o /dev/null "$url" 2>/dev/null && break; sleep 0.1; done
  h2load -t2 -c50 -m10 -D 1 "$url" >/dev/null 2>&1 || true # warm-up
  rps[$name]=$(h2load -t2 -c50 -m10 -D "$duration" "$url" 2>&1 | awk '/^finished in/ { gsub(",", "", $4); printf "%.0f", $4 }
                                                                   /^requests:/ { if ($10 + 0 > 0) printf " [%s failed]", $10 }
                                                                   /^status codes:/ { if ($5 + $7 + $9 > 0) printf " [%s 3xx, %s 4xx, %s 5xx]", $5, $7, $9 }')
  kill -TERM "$pid"
  wait "$pid" 2>/dev/null || true
}

tls="cert=$work/cert.pem&key=$work/key.pem"
p1=$((port + 1)); p2=$((port + 2))
exe/tipi -q -e production -w 2 -l 127.0.0.1:$p1 -b "ssl://127.0.0.1:$p2?$tls" bench/hello.ru >"$work/tipi.log" 2>&1 &
pid=$!; pids+=("$pid")
h2 "tipi h2c" "http://127.0.0.1:$p1/" "$pid" && true
exe/tipi -q -e production -w 2 -l 127.0.0.1:$p1 -b "ssl://127.0.0.1:$p2?$tls" bench/hello.ru >"$work/tipi.log" 2>&1 &
pid=$!; pids+=("$pid")
h2 "tipi h2" "https://127.0.0.1:$p2/" "$pid"

exe/tipi -q -e production -w 1 -l 127.0.0.1:$p1 bench/hello.ru >"$work/tipi.log" 2>&1 &
pid=$!; pids+=("$pid")
h2 "tipi -w 1 h2c" "http://127.0.0.1:$p1/" "$pid"
ruby bench/async_http_h2.rb $p1 >"$work/async-http.log" 2>&1 &
pid=$!; pids+=("$pid")
h2 "async-http h2c" "http://127.0.0.1:$p1/" "$pid"

# nginx closes a connection after 1,000 requests by default, and h2load does not reconnect.
nginx_conf $p1 " http2" "keepalive_requests 100000000;" # h2c: prior knowledge on an http2 listener
/usr/sbin/nginx -c "$work/nginx.conf" -e "$work/nginx-error.log" >"$work/nginx.log" 2>&1 &
pid=$!; pids+=("$pid")
h2 "nginx h2c" "http://127.0.0.1:$p1/" "$pid"
nginx_conf $p2 " ssl http2" "ssl_certificate $work/cert.pem; ssl_certificate_key $work/key.pem; ssl_protocols TLSv1.2 TLSv1.3; keepalive_requests 100000000;"
/usr/sbin/nginx -c "$work/nginx.conf" -e "$work/nginx-error.log" >"$work/nginx.log" 2>&1 &
pid=$!; pids+=("$pid")
h2 "nginx h2" "https://127.0.0.1:$p2/" "$pid"

printf '\n%-15s %10s\n' server 'req/s'
for name in "tipi h2c" "tipi h2" "nginx h2c" "nginx h2" "tipi -w 1 h2c" "async-http h2c"; do
  printf '%-15s %10s\n' "$name" "${rps[$name]}"
done
echo
echo "tipi / nginx, h2c:          $(ratio "${rps[tipi h2c]%% *}" "${rps[nginx h2c]%% *}")   (goal >= 0.50)"
echo "tipi / nginx, h2 over TLS:  $(ratio "${rps[tipi h2]%% *}" "${rps[nginx h2]%% *}")   (goal >= 0.50)"
echo "tipi / async-http, h2c, one process each: $(ratio "${rps[tipi -w 1 h2c]%% *}" "${rps[async-http h2c]%% *}")   (goal >= 10)"
