#!/usr/bin/env bash
# Recipe C4: the speaker-conditioned U-Net of C1-C3 with the pretrained GE2E speaker encoder, frozen
# (vsep/ge2e.py; its weights converted from the Resemblyzer wheel by tools/ge2e_weights.py), instead of the
# encoder learned with the separator: on voices neither has heard, GE2E tells two 4 s windows apart at an
# equal error rate of 2-3 % against the learned encoder's 18-25 % (BENCHMARKS.md). Every speaker of the bank
# as a target, mixed on the fly (vsep/enroll_data.py, as C3), warm-started from the bundled one-target U-Net
# (FiLM starts as identity; 256-dim embeddings). Resumable: run this again after any stop.
set -euo pipefail
cd "$(dirname "$0")/.."
BANK=${BANK:-runs/bank}
MODEL=${MODEL:-runs/c4}
GE2E=${GE2E:-runs/ge2e.npz}
[ -f "$BANK/bank.json" ] || .venv/bin/vsep bank --lake runs/lake --config recipes/bank_enroll.json --output "$BANK"
WHEEL=.venv/wheels/Resemblyzer-0.1.4-py3-none-any.whl  # make setup downloads it
[ -f "$WHEEL" ] || .venv/bin/pip download resemblyzer==0.1.4 --no-deps -d .venv/wheels -q
[ -f "$GE2E" ] || .venv/bin/python tools/ge2e_weights.py "$WHEEL" "$GE2E"
exec .venv/bin/vsep train --data "$BANK" --model-dir "$MODEL" --init-from vsep/models/default --embed-dim 256 \
  --speaker-encoder ge2e --speaker-weights "$GE2E" \
  --loss snr --learning-rate 0.0003 --batch-size 8 --eq-prob 0.5 --eq-db 6 --lowpass-prob 0.25 \
  --precision mixed_bfloat16 --epochs 400 --steps-per-epoch 400 --validation-steps 40 --patience 100 \
  --max-minutes "${MAX_MINUTES:-50}" --quiet
