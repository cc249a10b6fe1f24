#!/usr/bin/env bash
# Token verification throughput, per core, next to its floor (the bare
# Ed25519 signature check of the same tokens) measured in the same run.
# Usage: bench/verify.sh [COUNT]   (COUNT repetitions, default 5)
set -euo pipefail
cd "$(dirname "$0")/.."
count=${1:-5}
out=$(go test ./internal/token/ -run '^$' -bench 'BenchmarkVerify|BenchmarkSignatureOnly' -cpu 1 -benchmem -count "$count")
echo "$out" | grep -E '^(Benchmark|cpu:)'
echo
echo "$out" | awk '
  /^Benchmark/ { n[$1]++; ns[$1] += $3 }
  END {
    for (k in ns) { avg[k] = ns[k] / n[k] }
    base = avg["BenchmarkSignatureOnly/EdDSA"]
    printf "%-34s %10s %12s %10s\n", "benchmark (mean)", "ns/op", "per s/core", "vs floor"
    split("BenchmarkSignatureOnly/EdDSA BenchmarkVerify/EdDSA BenchmarkVerify/EdDSA-repeated BenchmarkVerify/ES256 BenchmarkVerify/RS256", order, " ")
    for (i = 1; i in order; i++) {
      k = order[i]
      if (!(k in avg)) continue
      printf "%-34s %10.0f %12.0f %9.2fx\n", k, avg[k], 1e9 / avg[k], avg[k] / base
    }
  }'
