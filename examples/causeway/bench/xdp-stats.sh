# shellcheck shell=bash
# Sourced by the XDP benchmarks: the kernel's BPF statistics of causeway's
# XDP program, on for the script's run and back as they were at its exit.

# The program's run time (ns) and runs, summed over its attachments.
bpf_runs() {
  bpftool prog show -j 2>/dev/null | python3 -c '
import json, sys
ns = n = 0
for p in json.load(sys.stdin):
    if p.get("name") == "turn_relay":
        ns += p.get("run_time_ns", 0); n += p.get("run_cnt", 0)
print(ns, n)'
}

# Turns the statistics on; `cleanup` (the script's) runs at exit, then they
# go back as they were.
bpf_stats_on() {
  local was
  was=$(sysctl -n kernel.bpf_stats_enabled)
  sysctl -qw kernel.bpf_stats_enabled=1
  # shellcheck disable=SC2064 # the value now, not at exit
  trap "sysctl -qw kernel.bpf_stats_enabled=$was; cleanup" EXIT
}
