#!/usr/bin/env bash
# The conditioned model from scratch on a fresh machine, as the three recipes ran it: the lake, the bank,
# then C1 (12 min), C2 (20 min) and C3 (45 min) on 2 CPU cores. Log: runs/c_chain.log. Run it again after any
# stop: a finished stage (runs/cN/.chain_done) is skipped; an interrupted one resumes from its last epoch
# with its whole time again (--max-minutes counts per run).
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f runs/lake/index.jsonl ] || .venv/bin/vsep collect --speakers ../shared/data/speakers --noise ../shared/data/noise \
  --rir ../shared/data/rir --lake runs/lake
[ -f runs/bank/bank.json ] || .venv/bin/vsep bank --lake runs/lake --config recipes/bank_enroll.json --output runs/bank
stage() {  # stage NAME MINUTES
  [ -f "runs/$1/.chain_done" ] && return 0
  MAX_MINUTES=$2 "recipes/train_$1.sh" && touch "runs/$1/.chain_done"
}
stage c1 "${C1_MINUTES:-12}"
stage c2 "${C2_MINUTES:-20}"
stage c3 "${C3_MINUTES:-45}"
