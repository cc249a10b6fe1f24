#!/usr/bin/env bash
# SSH gateway performance beside a direct connection to the same sshd, in
# the same run (cmd/vigil BenchmarkSSH). Needs root and OpenSSH (run
# scripts/test-deps.sh first).
#
# Usage: bench/ssh.sh            # full run (1,000 idle sessions)
#        SESSIONS=200 BULK=1x bench/ssh.sh   # quicker
set -euo pipefail
cd "$(dirname "$0")/.."
BULK=${BULK:-3x}
KEYS=${KEYS:-2000x}
STARTS=${STARTS:-3s}
SESSIONS=${SESSIONS:-1000}
out=$(mktemp)
trap 'rm -f "$out"' EXIT
run() { go test ./cmd/vigil -run '^$' -timeout 60m "$@" | tee -a "$out" | grep -E '^Benchmark|FAIL'; }
run -bench 'SSH/bulk' -benchtime "$BULK"
run -bench 'SSH/keystroke' -benchtime "$KEYS"
run -bench 'SSH/start' -benchtime "$STARTS"
VIGIL_BENCH_SESSIONS=$SESSIONS run -bench 'SSH/idle-memory' -benchtime 1x
run -bench 'SSH/watchers' -benchtime "$BULK"
echo
awk '
  /^BenchmarkSSH\// {
    name = $1; sub(/-[0-9]+$/, "", name); sub(/^BenchmarkSSH\//, "", name)
    for (i = 3; i < NF; i++) v[name, $(i+1)] = $i
    nsop[name] = $3
  }
  function ratio(a, b) { return (b > 0) ? a / b : 0 }
  END {
    for (k = 1; k <= 2; k++) {
      kind = (k == 1) ? "logs" : "random"
      d = v["bulk/" kind "/direct", "MB/s"]; g = v["bulk/" kind "/vigil", "MB/s"]
      printf "bulk %-6s  direct %7.1f MB/s  vigil %7.1f MB/s  ratio %.2f (goal >= 0.6)  gateway %.2f cpu-s/GiB (goal <= 1.5)\n", kind, d, g, ratio(g, d), v["bulk/" kind "/vigil", "cpu-s/GiB"]
    }
    printf "keystroke   direct p50 %s µs p99 %s µs; vigil p50 %s µs p99 %s µs; added p99 %d µs (goal <= 500)\n", \
      v["keystroke/direct", "p50-µs"], v["keystroke/direct", "p99-µs"], v["keystroke/vigil", "p50-µs"], v["keystroke/vigil", "p99-µs"], \
      v["keystroke/vigil", "p99-µs"] - v["keystroke/direct", "p99-µs"]
    printf "keystroke   with every rule pack: p50 %s µs p99 %s µs; with 50 watchers: p50 %s µs p99 %s µs\n", \
      v["keystroke/vigil-rules", "p50-µs"], v["keystroke/vigil-rules", "p99-µs"], v["keystroke/vigil-watched-50", "p50-µs"], v["keystroke/vigil-watched-50", "p99-µs"]
    w0 = v["watchers/0", "MB/s"]; w50 = v["watchers/50", "MB/s"]
    printf "watchers    bulk through vigil %.1f MB/s alone, %.1f MB/s with 50 live watchers: ratio %.2f (goal >= 0.95); %.1f watchers cut off\n", w0, w50, ratio(w50, w0), v["watchers/50", "cut-off-watchers"]
    ds = 1e9 / nsop["start/direct"]; gs = 1e9 / nsop["start/vigil"]
    printf "starts      direct %.0f/s  vigil %.0f/s  ratio %.2f (goal >= 0.7)\n", ds, gs, ratio(gs, ds)
    printf "idle        %.0f KiB per session at %d sessions (goal <= 256)\n", v["idle-memory", "KiB/session"], v["idle-memory", "sessions"]
  }' "$out"
