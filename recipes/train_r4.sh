#!/usr/bin/env bash
# Recipe R4: R1 (the bundled model) fine-tuned on data whose interfering voice shares the target's room:
# recipes/prepare_cross_source_room.json reverberates 35 % of targets (R1: 15 %) and puts the other voice of
# 70 % of those mixtures in the same room (R1: never; the cross-source `room` condition has both voices in
# the room). Otherwise R1's recipe, lr 1e-4. Resumable: run this again after any stop.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-runs/data_xs_room}
MODEL=${MODEL:-runs/r4}
[ -f "$DATA/manifest.json" ] || .venv/bin/vsep prepare --lake runs/lake --output "$DATA" \
  --config recipes/prepare_cross_source_room.json --direct_num_workers=2 --direct_running_mode=multi_processing
exec .venv/bin/vsep train --data "$DATA" --model-dir "$MODEL" --init-from vsep/models/default \
  --loss snr --learning-rate 0.0001 --batch-size 8 --remix-prob 0.7 \
  --eq-prob 0.5 --eq-db 6 --lowpass-prob 0.25 --other-shift-prob 0.5 --other-shift 0.15 \
  --precision mixed_bfloat16 --epochs 400 --steps-per-epoch 400 --validation-steps 40 --patience 100 \
  --max-minutes "${MAX_MINUTES:-55}" --quiet
