#!/usr/bin/env bash
# End-to-end replay throughput and peak memory: generates a history of about
# 1,000,000 events (50,000 customers x 5 years) and replays it with the release build
# into a fresh sled store, under /usr/bin/time for the peak resident set size.
#
#   benches/replay_e2e.sh [CUSTOMERS] [WORKDIR]
set -euo pipefail
cd "$(dirname "$0")/.."
customers=${1:-50000}
work=${2:-$(mktemp -d)}
cargo build --release --quiet
bin=target/release/churnwatch
echo "== generating $customers customers x 5 years into $work"
/usr/bin/time -f "generate: %e s, peak RSS %M KiB" \
  "$bin" generate --customers "$customers" --dealers 20 --years 5 --seed 42 --out "$work/history" --log warn
wc -l "$work/history/events.jsonl"
ls -l "$work/history/events.jsonl"
echo "== replaying"
/usr/bin/time -f "replay: %e s wall, %U s user, peak RSS %M KiB" \
  "$bin" replay --input "$work/history/events.jsonl" --store "$work/store" \
  --out "$work/changes.jsonl" --fresh --summary-json "$work/summary.json" --log warn
echo "== summary: $work/summary.json"
