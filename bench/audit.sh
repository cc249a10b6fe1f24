#!/usr/bin/env bash
# Audit trail performance against the issue's goals, in one run:
#   durable appends/s as the server runs them (128 writers, group commit,
#   full-text index, signed checkpoints)            goal >= 20,000/s
#   verification of a 1,000,000-event log           goal >= 500,000 events/s
#   search latency on that log, p50/p99 per query   goal p99 <= 50 ms
#   SIEM forwarding over TCP to a collector on loopback (JSONL and CEF)
# Usage: bench/audit.sh [SEARCH_ITERATIONS]   (default 200)
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-200}
go test ./internal/audit/ -run '^$' -bench 'AppendSigned' -benchtime 40000x -count 3 | grep -E '^(cpu:|Benchmark)'
go test ./internal/audit/ -run '^$' -bench 'Verify' -benchtime 3x | grep -E '^Benchmark'
go test ./internal/audit/ -run '^$' -bench 'Search' -benchtime "${n}x" | grep -E '^Benchmark'
go test ./internal/siem/ -run '^$' -bench 'Forward' -benchtime 50000x | grep -E '^Benchmark'
