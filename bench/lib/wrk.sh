# Shared by bench/http.sh, bench/https.sh and bench/h2.sh (sourced): start servers on loopback
# one at a time, load each with wrk -t2 -c50, keep-alive then Connection: close, and collect
# req/s, p99 latency and RSS in the `result` array. Set `duration`, `scheme` (http or https)
# and `port` (the last port used) before use.

# Exits unless every tool named is installed (bin/setup installs them).
require_tools() {
  for tool in "$@"; do
    command -v "$tool" >/dev/null || [ -x "/usr/sbin/$tool" ] || { echo "$0: $tool missing (run bin/setup)" >&2; exit 1; }
  done
}

# Writes a self-signed certificate for localhost: $work/cert.pem and $work/key.pem.
self_signed_certificate() {
  ruby -Ilib -rpolyphony -e 'cert, key = Polyphony::TLS.self_signed(%w[localhost]); File.write(ARGV[0], cert); File.write(ARGV[1], key)' \
    "$work/cert.pem" "$work/key.pem"
}

work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# Waits until something answers on $1.
await_port() {
  for _ in $(seq 100); do
    curl -sk -o /dev/null "$scheme://127.0.0.1:$1/" && return 0
    sleep 0.1
  done
  echo "bench: nothing answers on port $1; the servers' logs:" >&2
  tail -n 5 "$work"/*.log >&2
  exit 1
}

# RSS in MB of process $1 and its children.
rss_mb() {
  { ps -o rss= -p "$1" || true; ps -o rss= --ppid "$1" || true; } | awk '{ kb += $1 } END { printf "%.0f", kb / 1024 }'
}

# Runs wrk against $1 with extra args; prints "req/s p99_ms [errors]".
run_wrk() {
  local port=$1; shift
  wrk -t2 -c50 -d"${duration}s" --latency "$@" "$scheme://127.0.0.1:$port/" |
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
  wrk -t2 -c50 -d1s "$scheme://127.0.0.1:$port/" >/dev/null # warm-up
  result[$name,ka]=$(run_wrk "$port")
  result[$name,close]=$(run_wrk "$port" -H 'Connection: close')
  result[$name,rss]=$(rss_mb "$pid")
  kill -TERM "$pid"
  wait "$pid" 2>/dev/null || true
}

# start NAME COMMAND...: runs the server (on port $((port + 1)), which the caller put in
# COMMAND) and benchmarks it.
start() {
  local name=$1; shift
  port=$((port + 1))
  "$@" >"$work/${name// /_}.log" 2>&1 &
  pids+=($!)
  bench "$name" "$port" $!
}

# nginx_conf PORT LISTEN_SUFFIX EXTRA: an nginx.conf answering "Hello" on PORT.
nginx_conf() {
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
    listen 127.0.0.1:$1$2;
    $3
    location / { default_type text/plain; return 200 'Hello'; }
  }
}
NGINX
}

# table NAME...: the results.
table() {
  printf '\n%-10s %14s %10s %14s %10s %8s\n' server 'keep-alive r/s' 'p99 ms' 'close r/s' 'p99 ms' 'RSS MB'
  for name in "$@"; do
    read -r ka_rps ka_p99 ka_err <<<"${result[$name,ka]}"
    read -r cl_rps cl_p99 cl_err <<<"${result[$name,close]}"
    printf '%-10s %14s %10s %14s %10s %8s %s\n' "$name" "$ka_rps" "$ka_p99" "$cl_rps" "$cl_p99" "${result[$name,rss]}" \
      "${ka_err:-}${cl_err:-}"
  done
}

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }

# The median of the numbers on stdin, one per line.
median() { sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# CPU ticks (user + system) of process $1 and its children.
ticks() {
  local total=0 pid
  for pid in "$1" $(pgrep -P "$1" || true); do
    [ -r "/proc/$pid/stat" ] || continue
    # Fields 14 and 15 are utime and stime; the command name (field 2) may hold spaces.
    total=$((total + $(sed 's/^.*) //' "/proc/$pid/stat" | awk '{ print $12 + $13 }')))
  done
  echo "$total"
}
hz=$(getconf CLK_TCK)
