#!/usr/bin/env bash
# Recipe R9: R1's recipe with --keep-weight 0.5 (deleting target magnitude costs extra in training), aimed at
# what tools/target_alone.py measures: on unheard recordings R1 deletes 2.3 dB of the target alone.
# Fine-tuned from the bundled R1 at lr 1e-4, a fixed 12 epochs, the last kept. Resumable: run again after a stop.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-runs/data_xs}
MODEL=${MODEL:-runs/r9}
[ -f "$DATA/manifest.json" ] || .venv/bin/vsep prepare --lake runs/lake --output "$DATA" \
  --config recipes/prepare_cross_source.json --direct_num_workers=2 --direct_running_mode=multi_processing
exec .venv/bin/vsep train --data "$DATA" --model-dir "$MODEL" --init-from vsep/models/default \
  --loss snr --keep-weight 0.5 --learning-rate 0.0001 --batch-size 8 --remix-prob 0.7 \
  --eq-prob 0.5 --eq-db 6 --lowpass-prob 0.25 --other-shift-prob 0.5 --other-shift 0.15 \
  --precision mixed_bfloat16 --epochs 12 --steps-per-epoch 400 --validation-steps 40 --patience 100 \
  --max-minutes "${MAX_MINUTES:-45}" --quiet
