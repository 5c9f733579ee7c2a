#!/usr/bin/env bash
# Recipe C5: C4's GE2E-conditioned U-Net (recipes/train_c4.sh), made cheap enough to train for long and
# taught that the enrollment is the cue:
# - the frozen GE2E encoder embeds the bank's windows once (--precomputed-embeddings, cached in the bank); an
#   enrollment is the mean of 1-8 other windows' embeddings (4-32 s), so a step runs no LSTM (C4: 0.7 s a step);
# - half of every batch comes in pairs (--pair-share 0.5): one mixture of two voices, once with each voice's
#   enrollment and that voice as the target;
# - GE2E really frozen (C4's optimizer had moved it: its sub-layers were left trainable).
# Warm-started from the bundled one-target U-Net (FiLM starts as identity). Resumable: run this again after any
# stop; MAX_MINUTES bounds one run.
set -euo pipefail
cd "$(dirname "$0")/.."
BANK=${BANK:-runs/bank}
MODEL=${MODEL:-runs/c5}
GE2E=${GE2E:-runs/ge2e.npz}
. recipes/enroll_setup.sh  # lake, bank and GE2E weights where missing
exec .venv/bin/vsep train --data "$BANK" --model-dir "$MODEL" --init-from vsep/models/default --embed-dim 256 \
  --speaker-encoder ge2e --speaker-weights "$GE2E" --precomputed-embeddings --pair-share 0.5 \
  --loss snr --learning-rate 0.0003 --batch-size 8 --eq-prob 0.5 --eq-db 6 --lowpass-prob 0.25 \
  --precision mixed_bfloat16 --epochs 400 --steps-per-epoch 400 --validation-steps 40 --patience 100 \
  --max-minutes "${MAX_MINUTES:-90}" --quiet
