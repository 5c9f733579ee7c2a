# Sourced by the enrollment recipes (train_c5.sh, train_c6.sh, train_c7.sh), from the project root with BANK and
# GE2E set: the lake, the speaker bank and the GE2E weights, each made only when missing.
[ -f runs/lake/index.jsonl ] || .venv/bin/vsep collect --speakers ../shared/data/speakers --noise ../shared/data/noise \
  --rir ../shared/data/rir --lake runs/lake
[ -f "$BANK/bank.json" ] || .venv/bin/vsep bank --lake runs/lake --config recipes/bank_enroll.json --output "$BANK"
WHEEL=.venv/wheels/Resemblyzer-0.1.4-py3-none-any.whl  # make setup downloads it
[ -f "$WHEEL" ] || .venv/bin/pip download resemblyzer==0.1.4 --no-deps -d .venv/wheels -q
[ -f "$GE2E" ] || .venv/bin/python tools/ge2e_weights.py "$WHEEL" "$GE2E"
