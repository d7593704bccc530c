#!/usr/bin/env bash
# Runs every cargo-fuzz target for a bounded time, starting from the
# committed seed corpus (seeds/<target>/); new inputs go to corpus/<target>/
# (not committed), crashes to artifacts/<target>/.
#
#   fuzz/run.sh            # 60 s per target
#   fuzz/run.sh 10         # 10 s per target
#   fuzz/run.sh 300 cert_verify
#
# cargo-fuzz needs nightly-only compiler flags (-Zsanitizer); on a stable
# toolchain RUSTC_BOOTSTRAP=1 unlocks them. Exit status: non-zero if any
# target found a crash (the input is in artifacts/; see README.md for how a
# crash becomes a regression test).
set -euo pipefail
cd "$(dirname "$0")"
secs="${1:-60}"
shift || true
targets=("$@")
[ "${#targets[@]}" -gt 0 ] || targets=(api_response cert_verify config_load hook_record kept_record)
export RUSTC_BOOTSTRAP=1
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
cargo fuzz build
status=0
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t"
  echo "=== fuzz $t for ${secs}s"
  if ! cargo fuzz run "$t" "corpus/$t" "seeds/$t" -- \
      -max_total_time="$secs" -max_len=65536 -rss_limit_mb=2048 -print_final_stats=1; then
    echo "!!! $t found a crash: see fuzz/artifacts/$t/" >&2
    status=1
  fi
done
exit "$status"
