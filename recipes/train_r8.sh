#!/usr/bin/env bash
# Recipe R8: more recording chains for the target. R1's recipe (fine-tuned from the bundled R1, lr 1e-4),
# with the trumpapp soundboard (5.1 min, 121 clips cut from many events) moved from the validation
# holdout into training (recipes/prepare_chains.json); the cross-source test holdout is unchanged, so
# R8 and R1 are compared on the same test mixtures. A fixed 12 epochs (R1's best epoch count): the
# validation set that chose epochs before now trains. Resumable: run this again after any stop.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-runs/data_chains}
MODEL=${MODEL:-runs/r8}
[ -f "$DATA/manifest.json" ] || .venv/bin/vsep prepare --lake runs/lake --output "$DATA" \
  --config recipes/prepare_chains.json --direct_num_workers=2 --direct_running_mode=multi_processing
exec .venv/bin/vsep train --data "$DATA" --model-dir "$MODEL" --init-from vsep/models/default \
  --loss snr --learning-rate 0.0001 --batch-size 8 --remix-prob 0.7 \
  --eq-prob 0.5 --eq-db 6 --lowpass-prob 0.25 --other-shift-prob 0.5 --other-shift 0.15 \
  --precision mixed_bfloat16 --epochs 12 --steps-per-epoch 400 --validation-steps 40 --patience 100 \
  --max-minutes "${MAX_MINUTES:-40}" --quiet
