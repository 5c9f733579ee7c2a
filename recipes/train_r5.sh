#!/usr/bin/env bash
# Recipe R5: R1 (the bundled model) fine-tuned with impostors: 30 % of remixed patches get as interference
# another patch's target with its voice shifted 10-20 % (pitch and formants), so a voice through the
# target's own recording chain counts as rest. The impostor lever lost 0.4 dB on the old split-by-recording
# test set, whose test recordings shared chains with training (chain cues paid there); the cross-source set
# is where it can show whether the model separates by voice or by chain. Otherwise R1's recipe, lr 1e-4.
# Resumable: run this again after any stop.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-runs/data_xs}
MODEL=${MODEL:-runs/r5}
[ -f "$DATA/manifest.json" ] || .venv/bin/vsep prepare --lake runs/lake --output "$DATA" \
  --config recipes/prepare_cross_source.json --direct_num_workers=2 --direct_running_mode=multi_processing
exec .venv/bin/vsep train --data "$DATA" --model-dir "$MODEL" --init-from vsep/models/default \
  --loss snr --learning-rate 0.0001 --batch-size 8 --remix-prob 0.7 \
  --eq-prob 0.5 --eq-db 6 --lowpass-prob 0.25 --other-shift-prob 0.5 --other-shift 0.15 \
  --impostor-prob 0.3 --impostor-shift 0.1 0.2 \
  --precision mixed_bfloat16 --epochs 400 --steps-per-epoch 400 --validation-steps 40 --patience 100 \
  --max-minutes "${MAX_MINUTES:-60}" --quiet
