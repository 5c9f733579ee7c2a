# vsep for training, tuning, separation and export: Vertex AI custom jobs and
# Cloud Build steps run it (entry point `vsep`, e.g. `docker run IMAGE train ...`).
#
#   docker build -t vsep .                                              CPU (tensorflow-cpu, as pinned)
#   docker build --build-arg TF_PACKAGE='tensorflow[and-cuda]' -t vsep-gpu .   NVIDIA GPUs (CUDA from pip wheels)
#
# Same pins as requirements.txt; only the TensorFlow flavour can change.
FROM python:3.11-slim

ARG TF_PACKAGE=tensorflow-cpu
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
# dependencies first: this layer is rebuilt only when the pins change
COPY requirements.txt requirements-dev.txt ./
RUN sed -i "s/^tensorflow-cpu==/${TF_PACKAGE}==/" requirements.txt \
 && pip install -r requirements.txt

COPY setup.py pyproject.toml MANIFEST.in README.md ./
COPY vsep ./vsep
COPY beam_jobs ./beam_jobs
COPY tuner ./tuner
COPY cloud ./cloud
RUN pip install --no-deps . \
 && vsep --help > /dev/null

ENTRYPOINT ["vsep"]
CMD ["--help"]
