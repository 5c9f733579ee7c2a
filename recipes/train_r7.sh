#!/usr/bin/env bash
# Recipe R7: R1 (the bundled model) fine-tuned with R1's recipe at lr 1e-4, validated on the cross-source
# validation set (vsep train --val-folder): the best epoch, early stopping and the lr schedule follow
# recordings, voices and rooms held out whole, not the data set's val split (whose interfering voices
# come from corpora training has; R6 gained there and not on the cross-source set).
# Resumable: run this again after any stop.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-runs/data_xs}
MODEL=${MODEL:-runs/r7}
XVAL=${XVAL:-runs/xtest_val}
[ -f "$DATA/manifest.json" ] || .venv/bin/vsep prepare --lake runs/lake --output "$DATA" \
  --config recipes/prepare_cross_source.json --direct_num_workers=2 --direct_running_mode=multi_processing
[ -f "$XVAL/crosstest.json" ] || .venv/bin/vsep crosstest --lake runs/lake --data "$DATA" --output "$XVAL" --split val
exec .venv/bin/vsep train --data "$DATA" --model-dir "$MODEL" --init-from vsep/models/default --val-folder "$XVAL" \
  --loss snr --learning-rate 0.0001 --batch-size 8 --remix-prob 0.7 \
  --eq-prob 0.5 --eq-db 6 --lowpass-prob 0.25 --other-shift-prob 0.5 --other-shift 0.15 \
  --precision mixed_bfloat16 --epochs 400 --steps-per-epoch 400 --patience 100 \
  --max-minutes "${MAX_MINUTES:-35}" --quiet
