#!/usr/bin/env bash
# Recipe C3: C2 (recipes/train_c2.sh) with two more kinds of training example, started from C2's best weights
# (its epoch 8). C2 had learned the shortcut "a voice alone is the rest": every example with one voice was
# the enrolled voice's absence, so given a clean recording of the enrolled speaker it returned silence
# (10.5 dB lost: the floor). C3 adds the enrolled voice alone (15 %) and, in 35 % of the two-voice examples,
# voices taking turns (1-3 s stretches) as in a debate (vsep/enroll_data.py). Resumable: run this again.
set -euo pipefail
cd "$(dirname "$0")/.."
BANK=${BANK:-runs/bank}
MODEL=${MODEL:-runs/c3}
INIT=${INIT:-runs/c2}
[ -f "$BANK/bank.json" ] || .venv/bin/vsep bank --lake runs/lake --config recipes/bank_enroll.json --output "$BANK"
exec .venv/bin/vsep train --data "$BANK" --model-dir "$MODEL" --init-from "$INIT" --embed-dim 128 \
  --speaker-loss 0.05 --loss snr --learning-rate 0.0003 --batch-size 8 --eq-prob 0.5 --eq-db 6 --lowpass-prob 0.25 \
  --precision mixed_bfloat16 --epochs 400 --steps-per-epoch 400 --validation-steps 40 --patience 100 \
  --max-minutes "${MAX_MINUTES:-100}" --quiet
