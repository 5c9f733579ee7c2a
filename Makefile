# Two commands do all set-up on a fresh machine:
#   make demo   the main job end to end on the embedded default (DirectRunner, local disk)
#   make test   the test suite (what .ci/run calls)
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# the pretrained GE2E speaker encoder's weights travel in Resemblyzer's wheel (not installed: no PyTorch needed;
# tools/ge2e_weights.py reads them): for recipes/train_c4.sh and its tests
GE2E_WHEEL := $(VENV)/wheels/Resemblyzer-0.1.4-py3-none-any.whl
RUNS   ?= runs/demo

.PHONY: setup system test demo bench listen lint clean image image-test

setup: $(STAMP) $(GE2E_WHEEL) system

$(STAMP): requirements.txt requirements-dev.txt setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements-dev.txt
	$(BIN)/pip install -q --no-deps --no-build-isolation -e .
	touch $@

$(GE2E_WHEEL): $(STAMP)
	$(BIN)/pip download -q resemblyzer==0.1.4 --no-deps -d $(VENV)/wheels

# ffmpeg/ffprobe: museval needs them on PATH, and vsep falls back to ffmpeg
# for formats libsndfile cannot read. As root, also buildah and debootstrap
# (container images: make image, and their tests).
system:
	@command -v ffmpeg >/dev/null && command -v ffprobe >/dev/null || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq --no-install-recommends ffmpeg; }
	@[ "$$(id -u)" != 0 ] || { command -v buildah >/dev/null && command -v debootstrap >/dev/null; } || { \
	  apt-get update -qq && apt-get install -y -qq --no-install-recommends buildah debootstrap >/dev/null; }

test: setup
	$(BIN)/python -m pytest tests -ra

demo: setup
	$(BIN)/vsep demo --workdir $(RUNS)

bench: setup
	$(BIN)/python benchmarks/bench_prepare.py

# the bundled model on the real 8-minute crosstalk recording: runs/listen/index.html
listen: setup
	$(BIN)/python tools/listening_page.py

lint: setup
	$(BIN)/ruff check vsep beam_jobs tuner tests benchmarks

# container images with buildah on a Debian 12 base made here (root; tools/images.sh)
image:
	tools/images.sh build

# inside the built images: vsep --help, separate on a real recording, a short prepare (DirectRunner);
# the Dataflow worker image (all but Beam's boot program) built and run the same way
image-test: image
	tools/images.sh test
	tools/images.sh worker
	tools/images.sh worker-test

clean:
	rm -rf $(VENV) runs build dist *.egg-info
