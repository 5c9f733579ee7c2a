#!/usr/bin/env bash
# Recipe R1: the bundled stage-4 U-Net fine-tuned on the whole new corpus (7.6 h, about 460 training
# voices), whole sources, corpora, noises and rooms held out for val and the cross-source test
# (recipes/prepare_cross_source.json). Resumable: run this again after any stop.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-runs/data_xs}
MODEL=${MODEL:-runs/r1}
[ -f "$DATA/manifest.json" ] || .venv/bin/vsep prepare --lake runs/lake --output "$DATA" \
  --config recipes/prepare_cross_source.json --direct_num_workers=2 --direct_running_mode=multi_processing
exec .venv/bin/vsep train --data "$DATA" --model-dir "$MODEL" --init-from vsep/models/default \
  --loss snr --learning-rate 0.0002 --batch-size 8 --remix-prob 0.7 \
  --eq-prob 0.5 --eq-db 6 --lowpass-prob 0.25 --other-shift-prob 0.5 --other-shift 0.15 \
  --precision mixed_bfloat16 --epochs 400 --steps-per-epoch 400 --validation-steps 40 --patience 100 \
  --max-minutes "${MAX_MINUTES:-100}" --quiet
