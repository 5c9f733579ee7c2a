#!/usr/bin/env bash
# Recipe R2: R1 (the bundled model) fine-tuned with a harder recording chain: random channel EQ on
# 80 % of patches (target and interference separately, up to 10 dB) and low-passing on 40 % of those,
# where R1 had 50 % / 6 dB / 25 %. The issue's diagnosis: the model loses target speech recorded
# through channels it never heard. float32: this session's CPU has no bfloat16 units.
# Resumable: run this again after any stop.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-runs/data_xs}
MODEL=${MODEL:-runs/r2}
[ -f "$DATA/manifest.json" ] || .venv/bin/vsep prepare --lake runs/lake --output "$DATA" \
  --config recipes/prepare_cross_source.json --direct_num_workers=2 --direct_running_mode=multi_processing
exec .venv/bin/vsep train --data "$DATA" --model-dir "$MODEL" --init-from vsep/models/default \
  --loss snr --learning-rate 0.0001 --batch-size 8 --remix-prob 0.7 \
  --eq-prob 0.8 --eq-db 10 --lowpass-prob 0.4 --other-shift-prob 0.5 --other-shift 0.15 \
  --precision "${PRECISION:-float32}" --epochs 400 --steps-per-epoch 200 --validation-steps 40 --patience 100 \
  --max-minutes "${MAX_MINUTES:-50}" --quiet
