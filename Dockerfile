# vsep for training, tuning, separation and export: Vertex AI custom jobs and
# Cloud Build steps run it (entry point `vsep`, e.g. `docker run IMAGE train ...`).
#
#   docker build -t vsep .                                              CPU (tensorflow-cpu, as pinned)
#   docker build --build-arg TF_PACKAGE='tensorflow[and-cuda]' -t vsep-gpu .   NVIDIA GPUs (CUDA from pip wheels)
#   make image          here: buildah on a Debian 12 base made with debootstrap (tools/images.sh)
#
# BASE_IMAGE: any Debian-based image with Python 3.11 whose `python` and `pip` are on PATH
# (python:3.11-slim, as Cloud Build uses; localhost/vsep-base:bookworm, made by tools/images.sh).
# PIP_CA_BUNDLE: a CA bundle for pip (PIP_CERT, also seen by pip runs that sdists' builds start), for
# builds behind a TLS-inspecting proxy (mounted by the builder).
# Same pins as requirements.txt; only the TensorFlow flavour can change.
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}

ARG TF_PACKAGE=tensorflow-cpu
ARG PIP_CA_BUNDLE=
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    TF_CPP_MIN_LOG_LEVEL=2

# ffmpeg/ffprobe: museval needs them, and vsep decodes what libsndfile cannot read with them
RUN apt-get update \
 && apt-get install -y --no-install-recommends ffmpeg \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/vsep
# dependencies first: this layer is rebuilt only when the pins change. pesq is built from its
# sdist: a C compiler for that step only.
COPY requirements.txt requirements-dev.txt ./
RUN sed -i "s/^tensorflow-cpu==/${TF_PACKAGE}==/" requirements.txt \
 && apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev \
 && { [ -z "$PIP_CA_BUNDLE" ] || export PIP_CERT="$PIP_CA_BUNDLE"; } \
 && pip install -r requirements.txt \
 && apt-get purge -y gcc libc6-dev && apt-get autoremove -y && rm -rf /var/lib/apt/lists/*

COPY setup.py pyproject.toml MANIFEST.in README.md ./
COPY vsep ./vsep
COPY beam_jobs ./beam_jobs
COPY tuner ./tuner
COPY cloud ./cloud
RUN { [ -z "$PIP_CA_BUNDLE" ] || export PIP_CERT="$PIP_CA_BUNDLE"; } \
 && pip install --no-deps . \
 && vsep --help > /dev/null

ENTRYPOINT ["vsep"]
CMD ["--help"]
