#!/usr/bin/env bash
# Recipe C1: the speaker-conditioned model (enrollment clip -> embedding -> FiLM on every U-Net encoder layer),
# trained with every speaker of the bank's train split as a target (about 358 voices, 4.2 h), mixed on the fly
# (vsep/enroll_data.py), warm-started from the bundled one-target U-Net (its layers; FiLM starts as identity).
# Splits and held-out sources are those of recipes/prepare_cross_source.json, plus Biden held out for test
# (recipes/bank_enroll.json: his 99 s are the enrolled-unseen-speaker check). Resumable: run this again after any stop.
# As run: stopped by hand after epoch 5 (about 12 min; MAX_MINUTES=12 reproduces it), C2 starting from its best.
set -euo pipefail
cd "$(dirname "$0")/.."
BANK=${BANK:-runs/bank}
MODEL=${MODEL:-runs/c1}
[ -f "$BANK/bank.json" ] || .venv/bin/vsep bank --lake runs/lake --config recipes/bank_enroll.json --output "$BANK"
exec .venv/bin/vsep train --data "$BANK" --model-dir "$MODEL" --init-from vsep/models/default --embed-dim 128 \
  --loss snr --learning-rate 0.0003 --batch-size 8 --eq-prob 0.5 --eq-db 6 --lowpass-prob 0.25 \
  --precision mixed_bfloat16 --epochs 400 --steps-per-epoch 400 --validation-steps 40 --patience 100 \
  --max-minutes "${MAX_MINUTES:-100}" --quiet
