#!/usr/bin/env bash
# Recipe G2: G1 (recipes/train_g1.sh, same pack, same device steps) with chain swaps: half of the
# interference windows take the long-term spectral envelope of a random target window (a target's
# recording chain), half of the targets that of a random interference window (tools/gpu_train.py
# chain_swap), so that the recording chain says nothing about which voice is the target. 4.5 minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
MINUTES=${MINUTES:-4.5} AUGMENT='{"chain_swap": 0.5}' OUT=${OUT:-runs/g2} exec bash recipes/train_g1.sh
