#!/usr/bin/env bash
# Builds bench/h1p_c.c against the release static library and Debian's libhttp-parser-dev
# (bin/setup installs it), then runs it. Usage: bench/h1p_c.sh [requests]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked -q -p polyphony-capi
out="$(mktemp -d)/h1p_c"
cc -O2 -std=c11 -D_POSIX_C_SOURCE=200809L -Iinclude bench/h1p_c.c target/release/libpolyphony_capi.a \
  -lhttp_parser -lpthread -ldl -lm -o "$out"
"$out" "$@"
