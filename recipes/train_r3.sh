#!/usr/bin/env bash
# Recipe R3: R1 (the bundled model) fine-tuned on purified target data: tools/purify_data.py lets R1 separate
# every train window's "clean" target reference alone and drops the windows (with their mixtures) where it
# keeps less than -1 dB as the target (interviewers, crowds, music inside the reference); 18 of 1,003
# windows, 54 of 3,015 examples. Otherwise R1's recipe, lr 1e-4. Resumable: run this again after any stop.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-runs/data_xs}
PURE=${PURE:-runs/data_xs_pure}
MODEL=${MODEL:-runs/r3}
[ -f "$DATA/manifest.json" ] || .venv/bin/vsep prepare --lake runs/lake --output "$DATA" \
  --config recipes/prepare_cross_source.json --direct_num_workers=2 --direct_running_mode=multi_processing
[ -f "$PURE/manifest.json" ] || .venv/bin/python tools/purify_data.py --data "$DATA" --output "$PURE" \
  --drop 0.1 --keep-db -1
exec .venv/bin/vsep train --data "$PURE" --model-dir "$MODEL" --init-from vsep/models/default \
  --loss snr --learning-rate 0.0001 --batch-size 8 --remix-prob 0.7 \
  --eq-prob 0.5 --eq-db 6 --lowpass-prob 0.25 --other-shift-prob 0.5 --other-shift 0.15 \
  --precision mixed_bfloat16 --epochs 400 --steps-per-epoch 400 --validation-steps 40 --patience 100 \
  --max-minutes "${MAX_MINUTES:-60}" --quiet
