#!/usr/bin/env bash
# Recipe G1: R1 fine-tuned on a GPU machine without TensorFlow (Keras 3 on JAX, tools/gpu_train.py),
# about 50 times the training of R1 in six minutes: batch 32, lr 2e-4 cosine to 1e-5 over the run's time,
# R1's augmentation (remix at TIR -6..6 dB, resampled voices, random channels), bfloat16.
# Here, first:  .venv/bin/python tools/gpu_pack.py --data runs/data_xs --output gpu_pack
#               .venv/bin/python tools/gpu_import.py --export vsep/models/default gpu_pack/init.npz --half
#               wheels into .whl/ (keras 3.15.1, optree, namex, soundfile, cffi, pycparser; cp312 manylinux)
# Then on the device machine (carry gpu_pack and .whl), with OUT the folder that comes back:
#               bash recipes/train_g1.sh
# And here:     .venv/bin/python tools/gpu_import.py --base vsep/models/default --weights OUT/unet_<step>.npz \
#                   --log OUT/gpu_train_log.json --output-dir runs/g1_<step>
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/g1}
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH} KERAS_BACKEND=jax PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
exec python3 tools/gpu_train.py --pack gpu_pack --init gpu_pack/init.npz --config vsep/models/default/config.json \
  --out "$OUT" --minutes "${MINUTES:-5.5}" --batch-size 32 --learning-rate 2e-4 --save-every 1.45 --log-every 200 \
  ${AUGMENT:+--augment "$AUGMENT"}
