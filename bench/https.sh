#!/usr/bin/env bash
# Hello-world over HTTPS, all servers in one run, loopback only, the same certificate (ECDSA
# P-256, made here) for all: tipi -w 1, tipi -w 2, puma -w 2 (OpenSSL), and nginx (OpenSSL,
# 2 workers) as the peer. wrk -t2 -c50 for DURATION seconds each, keep-alive (requests/s over
# TLS) then Connection: close (each request a new connection and a handshake: the req/s are
# handshakes/s). wrk resumes its sessions; all servers do TLS 1.3 (nginx is given
# `ssl_protocols TLSv1.2 TLSv1.3`, its default since 1.23.4: Debian's 1.22 would otherwise
# offer only TLS 1.2, whose resumption skips the key exchange that TLS 1.3's keeps).
#
# Usage: bench/https.sh [DURATION]   (default 10 seconds per run; needs bin/setup's wrk, puma, nginx)
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${1:-10}
scheme=https
port=$((20000 + RANDOM % 10000)) # below the ephemeral ports (32768-) wrk connects from
# shellcheck source=bench/lib/wrk.sh
source bench/lib/wrk.sh
require_tools wrk puma nginx

self_signed_certificate
tls="cert=$work/cert.pem&key=$work/key.pem"

start "tipi -w 1" exe/tipi -q -e production -w 1 -b "ssl://127.0.0.1:$((port + 1))?$tls" bench/hello.ru
start "tipi -w 2" exe/tipi -q -e production -w 2 -b "ssl://127.0.0.1:$((port + 1))?$tls" bench/hello.ru
start "puma -w 2" puma -q -e production -w 2 -t 1:16 -b "ssl://127.0.0.1:$((port + 1))?$tls&verify_mode=none" bench/hello.ru
nginx_conf $((port + 1)) " ssl" "ssl_certificate $work/cert.pem; ssl_certificate_key $work/key.pem; ssl_protocols TLSv1.2 TLSv1.3;"
start "nginx" /usr/sbin/nginx -c "$work/nginx.conf" -e "$work/nginx-error.log"

table "tipi -w 1" "tipi -w 2" "puma -w 2" "nginx"
t2ka=${result[tipi -w 2,ka]%% *}; t2cl=${result[tipi -w 2,close]%% *}
pka=${result[puma -w 2,ka]%% *}; pcl=${result[puma -w 2,close]%% *}
nka=${result[nginx,ka]%% *}; ncl=${result[nginx,close]%% *}
echo
echo "tipi -w 2 / nginx, keep-alive req/s:          $(ratio "$t2ka" "$nka")   (goal >= 0.60)"
echo "tipi -w 2 / nginx, handshakes/s (close):      $(ratio "$t2cl" "$ncl")   (goal >= 0.60)"
echo "tipi -w 2 / puma -w 2, keep-alive:            $(ratio "$t2ka" "$pka")x"
echo "tipi -w 2 / puma -w 2, handshakes/s (close):  $(ratio "$t2cl" "$pcl")x"
