#!/usr/bin/env bash
# Runs every fuzz target for FUZZ_MINUTES (default 10) each, one after another,
# and prints a table of executions per target (the README's figures). Not run by
# CI, which fuzzes each target briefly. Crashes stop the run, with the input kept
# under fuzz/artifacts/<target>/ (turn it into a regression: see
# regressions/README.md).
#
#   fuzz/run-all.sh              # 10 minutes per target
#   FUZZ_MINUTES=1 fuzz/run-all.sh
set -euo pipefail
cd "$(dirname "$0")"
minutes="${FUZZ_MINUTES:-10}"
cargo +nightly fuzz build -O
printf '| target | seconds | executions | executions/s | corpus |\n|---|---|---|---|---|\n' > /tmp/fuzz-table.md
for target in $(cargo +nightly fuzz list); do
    mkdir -p "corpus/$target"
    log="/tmp/fuzz-$target.log"
    cargo +nightly fuzz run -O "$target" "corpus/$target" regressions/*/ -- \
        -max_total_time=$((minutes * 60)) -max_len=4096 -print_final_stats=1 >"$log" 2>&1
    runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$')
    rate=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$log" | grep -o '[0-9]*$')
    files=$(find "corpus/$target" -type f | wc -l)
    printf '| `%s` | %s | %s | %s | %s |\n' "$target" $((minutes * 60)) "$runs" "$rate" "$files" | tee -a /tmp/fuzz-table.md
done
echo
cat /tmp/fuzz-table.md
