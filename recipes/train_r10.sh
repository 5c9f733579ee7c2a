#!/usr/bin/env bash
# Recipe R10: the architecture lever of the quality issue, time context. R1 (the bundled model) gains a
# residual bidirectional GRU along time at the U-Net's bottleneck (--time-rnn 128: 128 units each way, one
# sequence per frequency row; its output projection starts at zero, so training starts from R1's exact
# output) and is fine-tuned with R1's recipe at lr 1e-4, a fixed 12 epochs, the last kept (as R8 and R9).
# Resumable: run this again after any stop.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-runs/data_xs}
MODEL=${MODEL:-runs/r10}
[ -f "$DATA/manifest.json" ] || .venv/bin/vsep prepare --lake runs/lake --output "$DATA" \
  --config recipes/prepare_cross_source.json --direct_num_workers=2 --direct_running_mode=multi_processing
exec .venv/bin/vsep train --data "$DATA" --model-dir "$MODEL" --init-from vsep/models/default --time-rnn 128 \
  --loss snr --learning-rate 0.0001 --batch-size 8 --remix-prob 0.7 \
  --eq-prob 0.5 --eq-db 6 --lowpass-prob 0.25 --other-shift-prob 0.5 --other-shift 0.15 \
  --precision mixed_bfloat16 --epochs 12 --steps-per-epoch 400 --validation-steps 40 --patience 100 \
  --max-minutes "${MAX_MINUTES:-60}" --quiet
