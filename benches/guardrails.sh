#!/usr/bin/env bash
# Guardrails' cost (issue 23, point 7): instructions per request under callgrind with one PII
# guardrail (every PII kind, redact) on requests (`pii`) against none (`none`), side by side on
# the same machine, at a prompt of about 2 KB of prose. The target: pii ≤ 1.3× none.
#   bash benches/guardrails.sh                       (release build, N=2000)
#   N=60 WARMUP=10 START_WAIT=300 NO_BUILD=1 SY_BIN=target/debug/switchyard \
#     UP_BIN=target/debug/mock-upstream \
#     bash benches/guardrails.sh                     smoke check on debug binaries (figures meaningless)
set -euo pipefail
cd "$(dirname "$0")/.."
PROMPT_BYTES=${PROMPT_BYTES:-2048} CONFIGS=${CONFIGS:-"none pii"} exec bash benches/instructions.sh
