#!/usr/bin/env bash
# Recipe C9: C7 (recipes/train_c7.sh, the bundled enrollment model) with decoder FiLM as well (--film-decoder):
# the embedding modulates every decoder layer but the last, not only the encoder layers, so the voice steers
# the masks where they are made (the lever after C8 showed more made voices to be spent). The new FiLM layers
# start as the identity, so C9 begins as C7. C7's data (voice shifts -12 and +12 %), C7's starting learning rate.
# Resumable: run this again after any stop; MAX_MINUTES bounds one run. Run once (2026-12-06): 18 epochs
# (35 min; lr 1e-4, halved at epochs 7, 10 and 16), best val loss -0.6787 at epoch 16 against C7's -0.6794;
# val bench +0.07 [-0.02, +0.17] dB paired (10 s clips): not kept, stopped by hand.
set -euo pipefail
cd "$(dirname "$0")/.."
BANK=${BANK:-runs/bank}
MODEL=${MODEL:-runs/c9}
GE2E=${GE2E:-runs/ge2e.npz}
INIT=${INIT:-vsep/models/enroll}
. recipes/enroll_setup.sh  # lake, bank and GE2E weights where missing
exec .venv/bin/vsep train --data "$BANK" --model-dir "$MODEL" --init-from "$INIT" --embed-dim 256 --time-rnn 128 \
  --film-decoder --speaker-encoder ge2e --speaker-weights "$GE2E" --precomputed-embeddings --pair-share 0.5 \
  --voice-shifts -12 12 --loss snr --learning-rate 0.0001 --batch-size 8 --eq-prob 0.5 --eq-db 6 \
  --lowpass-prob 0.25 --precision mixed_bfloat16 --epochs 400 --steps-per-epoch 400 --validation-steps 40 \
  --patience 100 --max-minutes "${MAX_MINUTES:-75}" --quiet
