#!/usr/bin/env bash
# Recipe C6: C5 (recipes/train_c5.sh, the bundled enrollment model) plus a residual bidirectional GRU along
# time at the U-Net's bottleneck (--time-rnn 128; zero-initialised output, so it starts as C5). C5 hears a
# voice only through FiLM on conv features with a receptive field of about a second; on test, two voices
# of similar timbre (LibriSpeech against speechocean762) are where it loses. The GRU sees the whole window,
# after the bottleneck's FiLM, so it can follow the enrolled voice across turns.
# Run once for 13 epochs (lr 1e-4, halved at epoch 6; best val loss -0.6566 at epoch 13 against C5's -0.6516)
# and stopped by hand for C7 (recipes/train_c7.sh), which starts from its saved epoch 12 (-0.6542).
# Warm-started from runs/c5 (or the bundled vsep/models/enroll). Resumable: run this again after any stop;
# MAX_MINUTES bounds one run.
set -euo pipefail
cd "$(dirname "$0")/.."
BANK=${BANK:-runs/bank}
MODEL=${MODEL:-runs/c6}
GE2E=${GE2E:-runs/ge2e.npz}
INIT=${INIT:-runs/c5}
[ -f "$INIT/config.json" ] || INIT=vsep/models/enroll
. recipes/enroll_setup.sh  # lake, bank and GE2E weights where missing
exec .venv/bin/vsep train --data "$BANK" --model-dir "$MODEL" --init-from "$INIT" --embed-dim 256 --time-rnn 128 \
  --speaker-encoder ge2e --speaker-weights "$GE2E" --precomputed-embeddings --pair-share 0.5 \
  --loss snr --learning-rate 0.0001 --batch-size 8 --eq-prob 0.5 --eq-db 6 --lowpass-prob 0.25 \
  --precision mixed_bfloat16 --epochs 400 --steps-per-epoch 400 --validation-steps 40 --patience 100 \
  --max-minutes "${MAX_MINUTES:-85}" --quiet
