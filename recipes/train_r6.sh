#!/usr/bin/env bash
# Recipe R6: capacity. R1 (the bundled model) grown by one U-Net level (tools/grow_model.py: depth 5 -> 6,
# 2.45 M -> 9.83 M parameters, same output at the start), then fine-tuned with R1's recipe on the
# cross-source data. On the old 1.5-hour corpus this lever moved validation loss the most of any
# (-0.763 -> -0.807); it was never measured on the cross-source set. Resumable: run this again after any stop.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-runs/data_xs}
MODEL=${MODEL:-runs/r6}
[ -f "$DATA/manifest.json" ] || .venv/bin/vsep prepare --lake runs/lake --output "$DATA" \
  --config recipes/prepare_cross_source.json --direct_num_workers=2 --direct_running_mode=multi_processing
[ -f runs/r1_d6/model.weights.h5 ] || .venv/bin/python tools/grow_model.py --model vsep/models/default \
  --output-dir runs/r1_d6
exec .venv/bin/vsep train --data "$DATA" --model-dir "$MODEL" --init-from runs/r1_d6 --depth 6 \
  --loss snr --learning-rate 0.0002 --batch-size 8 --remix-prob 0.7 \
  --eq-prob 0.5 --eq-db 6 --lowpass-prob 0.25 --other-shift-prob 0.5 --other-shift 0.15 \
  --precision mixed_bfloat16 --epochs 400 --steps-per-epoch 400 --validation-steps 40 --patience 100 \
  --max-minutes "${MAX_MINUTES:-50}" --quiet
