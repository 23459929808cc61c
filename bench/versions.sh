#!/usr/bin/env bash
# Is this tree slower than an older commit? Serves bench/hello.ru with `tipi -w 2` from the
# working tree and from REV (built once in a worktree with its own cargo target directory),
# alternating them ROUNDS times so that both see the same machine, and loads each with wrk -t2
# -c50, keep-alive then Connection: close (or, with MODES=h2, h2load -t2 -c50 -m10 over h2c;
# MODES="ka close h2" for all three). For each run it prints req/s and the CPU time per
# request of all the server's processes (user + system from /proc, which is steadier than req/s
# on 2 shared cores), then the medians and the ratios this tree / REV.
#
# Usage: [MODES="ka close"] bench/versions.sh REV [ROUNDS] [DURATION]
#        (defaults: 6 rounds of 8 seconds per run)
set -euo pipefail
cd "$(dirname "$0")/.."
rev=${1:?usage: bench/versions.sh REV [ROUNDS] [DURATION]}
rounds=${2:-6}
duration=${3:-8}
read -r -a modes <<<"${MODES:-ka close}"
scheme=http
port=$((20000 + RANDOM % 10000))
# shellcheck source=bench/lib/wrk.sh
source bench/lib/wrk.sh
require_tools wrk
[[ " ${modes[*]} " == *" h2 "* ]] && require_tools h2load

old_tree=${VERSIONS_TREE:-$(dirname "$PWD")/bench-$(git rev-parse --short "$rev")}
if [ ! -d "$old_tree" ]; then
  git worktree add -f --detach "$old_tree" "$rev" >/dev/null
fi
echo "building $rev in $old_tree ..."
(cd "$old_tree" && CARGO_TARGET_DIR="$old_tree-target" cargo build --quiet --release -p polyphony-ext &&
  cp "$old_tree-target/release/libpolyphony_ext.so" lib/polyphony/polyphony_ext.so)
echo "building this tree ..."
cargo build --quiet --release -p polyphony-ext
cp target/release/libpolyphony_ext.so lib/polyphony/polyphony_ext.so

# measure TREE MODE: prints "req/s us_per_request" for one run.
measure() {
  local tree=$1 mode=$2 pid before after out rps requests
  port=$((port + 1))
  (cd "$tree" && exec exe/tipi -q -e production -w 2 -l "127.0.0.1:$port" bench/hello.ru) >"$work/tipi.log" 2>&1 &
  pid=$!
  pids+=("$pid")
  await_port "$port"
  wrk -t2 -c50 -d1s "$scheme://127.0.0.1:$port/" >/dev/null # warm-up
  local args=()
  [ "$mode" = close ] && args=(-H 'Connection: close')
  before=$(ticks "$pid")
  if [ "$mode" = h2 ]; then
    out=$(h2load -t2 -c50 -m10 -D "$duration" "$scheme://127.0.0.1:$port/" 2>&1)
  else
    out=$(wrk -t2 -c50 -d"${duration}s" "${args[@]}" "$scheme://127.0.0.1:$port/")
  fi
  after=$(ticks "$pid")
  kill -TERM "$pid"
  wait "$pid" 2>/dev/null || true
  if [ "$mode" = h2 ]; then
    rps=$(awk '/^finished in/ { gsub(",", "", $4); printf "%.0f", $4 }' <<<"$out")
    requests=$(awk '/^requests:/ { print $8 }' <<<"$out") # (succeeded)
  else
    rps=$(awk '/Requests\/sec/ { printf "%.0f", $2 }' <<<"$out")
    requests=$(awk '/requests in/ { print $1 }' <<<"$out")
  fi
  awk -v r="$rps" -v n="$requests" -v t=$((after - before)) -v hz="$hz" \
    'BEGIN { printf "%s %.1f\n", r, t / hz * 1e6 / n }'
}

printf '\n%-6s %-10s %-6s %10s %12s\n' round tree mode 'req/s' 'CPU us/req'
for round in $(seq "$rounds"); do
  # Alternate which tree goes first, so that neither always runs on a warmer machine.
  if [ $((round % 2)) -eq 1 ]; then order="old new"; else order="new old"; fi
  for which in $order; do
    tree=$PWD
    [ "$which" = old ] && tree=$old_tree
    for mode in "${modes[@]}"; do
      read -r rps us <<<"$(measure "$tree" "$mode")"
      printf '%-6s %-10s %-6s %10s %12s\n' "$round" "$which" "$mode" "$rps" "$us"
      echo "$rps" >>"$work/$which-$mode-rps"
      echo "$us" >>"$work/$which-$mode-us"
    done
  done
done

echo
echo "medians over $rounds rounds ($rev = old, this tree = new):"
for mode in "${modes[@]}"; do
  for which in old new; do
    printf '  %-5s %-4s %10s req/s %8s us/req\n' "$mode" "$which" \
      "$(median <"$work/$which-$mode-rps")" "$(median <"$work/$which-$mode-us")"
  done
  printf '  %-5s new/old: req/s %s, CPU per request %s\n' "$mode" \
    "$(ratio "$(median <"$work/new-$mode-rps")" "$(median <"$work/old-$mode-rps")")" \
    "$(ratio "$(median <"$work/new-$mode-us")" "$(median <"$work/old-$mode-us")")"
done
