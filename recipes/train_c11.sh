#!/usr/bin/env bash
# Recipe C11: C7 (recipes/train_c7.sh, the bundled enrollment model) with a second residual time GRU, on the first
# decoder level (--time-rnn-levels 2: 16 frames by 16 bins of a 256-frame patch, against the bottleneck's 8 by
# 8), the "larger model" lever grown from C7 instead of trained from scratch. The new GRU's projection starts at
# zero, so C11 begins as C7. C7's data (voice shifts -12 and +12 %), C7's starting learning rate. A step costs
# 18 % more than C7's (0.21 s against 0.18 s, batch 8, bfloat16, forward and backward alone).
# Resumable: run this again after any stop; MAX_MINUTES bounds one run. Run once (2026-12-06): 19 epochs (42 min),
# best val loss -0.6832 at epoch 18 (C7 -0.6794); val bench 6.70 / 6.67 dB, paired against C7 +0.08 [-0.00, +0.16] /
# +0.07 [-0.03, +0.15] dB (10 s / 30 s clips), one-voice timeline 0.91 / 0.885: not kept, not run on test.
set -euo pipefail
cd "$(dirname "$0")/.."
BANK=${BANK:-runs/bank}
MODEL=${MODEL:-runs/c11}
GE2E=${GE2E:-runs/ge2e.npz}
INIT=${INIT:-vsep/models/enroll}
. recipes/enroll_setup.sh  # lake, bank and GE2E weights where missing
exec .venv/bin/vsep train --data "$BANK" --model-dir "$MODEL" --init-from "$INIT" --embed-dim 256 --time-rnn 128 \
  --time-rnn-levels 2 --speaker-encoder ge2e --speaker-weights "$GE2E" --precomputed-embeddings --pair-share 0.5 \
  --voice-shifts -12 12 --loss snr --learning-rate 0.0001 --batch-size 8 --eq-prob 0.5 --eq-db 6 \
  --lowpass-prob 0.25 --precision mixed_bfloat16 --epochs 400 --steps-per-epoch 400 --validation-steps 40 \
  --patience 100 --max-minutes "${MAX_MINUTES:-75}" --quiet
