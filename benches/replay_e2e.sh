#!/usr/bin/env bash
# End-to-end replay throughput and peak memory: generates a history of about
# 1,000,000 events (50,000 customers x 5 years), replays it with the release build
# into a fresh store (fjall, the default engine; under /usr/bin/time for the peak resident set size), fits
# the predictive models and replays again with them (the cost of scoring).
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
echo "== fitting the visit and spend models (calibration to 2024-06-30, holdout to 2025-12-31)"
/usr/bin/time -f "fit: %e s wall, peak RSS %M KiB" \
  "$bin" fit --input "$work/history/events.jsonl" --calibration-end 2024-06-30 \
  --holdout-end 2025-12-31 --out "$work/model.toml" --log warn
echo "== replaying again with the model (P(alive), expected visits and CLV on every change)"
/usr/bin/time -f "replay with model: %e s wall, %U s user, peak RSS %M KiB" \
  "$bin" replay --input "$work/history/events.jsonl" --store "$work/store-model" \
  --out "$work/changes-model.jsonl" --fresh --model "$work/model.toml" --log warn | grep -E "elapsed|changes "
