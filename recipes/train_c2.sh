#!/usr/bin/env bash
# Recipe C2: C1 (recipes/train_c1.sh: the speaker-conditioned U-Net, every voice of the bank as a target) plus a
# speaker-identification loss on the enrollment embeddings (a cosine classifier over the bank's training voices,
# weight 0.05), so that the encoder tells voices apart from the first step instead of only through FiLM's
# gradients; started from C1's best weights (its epoch 2 of 5: validation had stalled at SNRi 3.2-3.6 dB).
# Resumable: run this again after any stop.
# As run: stopped by hand after epoch 8 (about 20 min; MAX_MINUTES=20), C3 starting from its best.
set -euo pipefail
cd "$(dirname "$0")/.."
BANK=${BANK:-runs/bank}
MODEL=${MODEL:-runs/c2}
INIT=${INIT:-runs/c1}
[ -f "$BANK/bank.json" ] || .venv/bin/vsep bank --lake runs/lake --config recipes/bank_enroll.json --output "$BANK"
exec .venv/bin/vsep train --data "$BANK" --model-dir "$MODEL" --init-from "$INIT" --embed-dim 128 \
  --speaker-loss 0.05 --loss snr --learning-rate 0.0003 --batch-size 8 --eq-prob 0.5 --eq-db 6 --lowpass-prob 0.25 \
  --precision mixed_bfloat16 --epochs 400 --steps-per-epoch 400 --validation-steps 40 --patience 100 \
  --max-minutes "${MAX_MINUTES:-100}" --quiet
