#!/usr/bin/env bash
# Container images built and run for real, with buildah (vfs storage, chroot isolation, as root),
# on a Debian 12 base made here with debootstrap (Docker Hub images cannot be pulled here).
#
#   tools/images.sh base          localhost/vsep-base:bookworm: Debian 12 minbase + Debian's Python 3.11
#                                 in a venv on PATH (what python:3.11-slim gives); cached, made once
#   tools/images.sh build         Dockerfile on that base            -> localhost/vsep:latest
#   tools/images.sh test          inside it: vsep --help, vsep separate on a real recording (outputs
#                                 checked), a short collect + prepare with the DirectRunner
#   tools/images.sh worker        Dockerfile.dataflow up to the Beam boot program -> localhost/vsep-dataflow:worker
#   tools/images.sh worker-test   inside it: vsep and beam_jobs import, prepare runs with the DirectRunner
#
# `make image` = base + build, `make image-test` = test + worker + worker-test. Cloud Build builds the same
# Dockerfiles with their default bases (python:3.11-slim, apache/beam_python3.11_sdk).
# A build is tagged only when it succeeded: it is built under a temporary name, then tagged.
set -euo pipefail
cd "$(dirname "$0")/.."

export STORAGE_DRIVER=vfs BUILDAH_ISOLATION=chroot
BASE=${VSEP_BASE_IMAGE:-localhost/vsep-base:bookworm}
IMAGE=${VSEP_IMAGE:-localhost/vsep:latest}
WORKER=${VSEP_WORKER_IMAGE:-localhost/vsep-dataflow:worker}
CACHE=${VSEP_IMAGE_CACHE:-/var/tmp/vsep-images}
DATA=${VSEP_DATA:-$(cd .. && pwd)/shared/data}
CA=/etc/ssl/certs/ca-certificates.crt
SUITE=bookworm

die() { echo "images: $*" >&2; exit 2; }

# the mirror apt uses on this machine (deb822 sources or sources.list), else Debian's CDN
mirror() {
  local m
  m=$(grep -h -m1 -oP '^URIs:\s*\K\S+' /etc/apt/sources.list.d/debian.sources 2>/dev/null \
      || grep -h -m1 -oP '^deb\s+\K(http\S+)(?=\s+\S+\s+main)' /etc/apt/sources.list 2>/dev/null || true)
  echo "${VSEP_DEBIAN_MIRROR:-${m:-http://deb.debian.org/debian}}"
}

preflight() {  # one line for what is missing, before any work
  [ "$(id -u)" = 0 ] || die "needs root: buildah builds with vfs storage and chroot isolation as root here (run as root, or use sudo)"
  for tool in buildah debootstrap; do
    command -v "$tool" >/dev/null || die "$tool is not installed (apt-get install buildah debootstrap)"
  done
  local url
  url="$(mirror)/dists/$SUITE/Release"
  python3 - "$url" 2>/dev/null <<'EOF' || die "no network: cannot reach $(mirror) (the Debian base and apt) or pypi.org (pip)"
import sys, urllib.request
for url in (sys.argv[1], "https://pypi.org/simple/pip/"):
    urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=15)
EOF
}

exists() { buildah inspect --type image "$1" >/dev/null 2>&1; }

# build DOCKERFILE TAG CONTEXT [buildah bud args...]: tagged only on success, no half-tagged image left behind
build() {
  local file=$1 tag=$2 context=$3 tmp
  shift 3
  tmp="localhost/vsep-build-$$:partial"
  if ! buildah bud --layers --isolation chroot --file "$file" --tag "$tmp" \
      --volume "$CA:/etc/vsep-host-ca.crt:ro" --build-arg PIP_CA_BUNDLE=/etc/vsep-host-ca.crt "$@" "$context"; then
    buildah rmi -f "$tmp" >/dev/null 2>&1 || true
    die "build of $file failed (see above); $tag was not changed"
  fi
  buildah tag "$tmp" "$tag"
  buildah rmi "$tmp" >/dev/null  # the name only; the image stays under $tag
  echo "images: built $tag"
}

cmd_base() {
  preflight
  if exists "$BASE"; then echo "images: $BASE is cached"; return; fi
  local root="$CACHE/rootfs-$SUITE" ctr
  mkdir -p "$CACHE"
  if [ ! -f "$root/.complete" ]; then
    rm -rf "$root"
    debootstrap --variant=minbase "$SUITE" "$root" "$(mirror)" >"$CACHE/debootstrap.log" 2>&1 \
      || die "debootstrap failed (log: $CACHE/debootstrap.log)"
    touch "$root/.complete"
  fi
  ctr=$(buildah from scratch)
  BASE_CTR=$ctr
  trap 'buildah rm "$BASE_CTR" >/dev/null 2>&1 || true' EXIT
  buildah copy --quiet "$ctr" "$root" / >/dev/null
  buildah run --isolation chroot "$ctr" -- sh -ceu '
    rm -f /.complete
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      python3 python3-venv python3-dev ca-certificates >/dev/null
    python3 -m venv /opt/venv
    rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb'
  buildah config --env PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --env LANG=C.UTF-8 --cmd /bin/bash "$ctr"
  buildah commit --quiet "$ctr" "$BASE" >/dev/null
  echo "images: built $BASE ($(buildah run "$ctr" -- python --version))"
}

cmd_build() {
  preflight
  exists "$BASE" || cmd_base
  build Dockerfile "$IMAGE" . --build-arg BASE_IMAGE="$BASE"
}

cmd_worker() {
  preflight
  exists "$BASE" || cmd_base
  # the boot program stage (the Beam SDK image) is the last one; here everything up to it is built
  build Dockerfile.dataflow "$WORKER" . --target worker --build-arg BASE_IMAGE="$BASE"
}

# run IMAGE CMD...: in a fresh container of IMAGE, ../shared/data read-only at /data, $OUT at /out
run_in() {
  local image=$1 ctr rc=0
  shift
  ctr=$(buildah from --quiet "$image")
  buildah run --isolation chroot -v "$DATA:/data:ro" -v "$OUT:/out" -v "$PWD/tools:/tools:ro" "$ctr" -- "$@" || rc=$?
  buildah rm "$ctr" >/dev/null 2>&1 || true
  return "$rc"
}

need_data() { [ -d "$DATA/speakers" ] || die "real audio not found at $DATA (set VSEP_DATA)"; }

# begin_test IMAGE HOW-TO-BUILD: real audio and the image there, a scratch $OUT removed at exit
begin_test() {
  need_data
  exists "$1" || die "$1 is not built ($2)"
  OUT=$(mktemp -d /var/tmp/vsep-image-test.XXXXXX)
  trap 'rm -rf "$OUT"' EXIT
  T0=$SECONDS
}

cmd_test() {
  begin_test "$IMAGE" "make image"
  run_in "$IMAGE" vsep --help | grep -q "separate" || die "vsep --help in $IMAGE lists no separate command"
  echo "images: vsep --help ok"
  run_in "$IMAGE" sh -ceu '
    target=$(python -c "from vsep import model_io; print(model_io.read_config(str(model_io.BUNDLED))[0].target)")
    f=$(ls -S /data/speakers/$target/*.mp3 | head -1)
    vsep separate --no-progress -o /out/sep "$f"
    python /tools/image_check.py separate "$f" /out/sep'
  run_in "$IMAGE" sh -ceu "$(prepare_script)"
  echo "images: test of $IMAGE passed in $((SECONDS - T0)) s"
}

# a short collect + prepare with the DirectRunner on a few real recordings, checked
prepare_script() {
  cat <<'EOF'
mkdir -p /tmp/c/speakers /tmp/c/noise /tmp/c/rir
cp -r /data/speakers/biden /tmp/c/speakers/
mkdir /tmp/c/speakers/trump && ls /data/speakers/trump/quotes_* | head -6 | xargs -I{} cp {} /tmp/c/speakers/trump/
for d in $(ls -d /data/speakers/libri-* | head -6); do mkdir /tmp/c/speakers/${d##*/}; ls $d/* | head -2 | xargs -I{} cp {} /tmp/c/speakers/${d##*/}/; done
cp -r /data/noise/babble /tmp/c/noise/ && cp $(ls /data/rir/* | head -1) /tmp/c/rir/
vsep collect --speakers /tmp/c/speakers --noise /tmp/c/noise --rir /tmp/c/rir --lake /tmp/lake > /dev/null
vsep prepare --lake /tmp/lake --output /tmp/data --runner DirectRunner > /dev/null
python /tools/image_check.py prepare /tmp/data
EOF
}

cmd_worker_test() {
  begin_test "$WORKER" "tools/images.sh worker"
  run_in "$WORKER" python -c "import vsep, beam_jobs.prepare, beam_jobs.collect, apache_beam; print('images: worker imports ok, Beam', apache_beam.__version__)"
  run_in "$WORKER" sh -ceu "$(prepare_script)"
  echo "images: test of $WORKER passed in $((SECONDS - T0)) s"
}

# any Dockerfile on the local base, context its folder (the tests' small builds)
cmd_dockerfile() {
  [ $# = 2 ] || die "usage: tools/images.sh dockerfile FILE TAG"
  preflight
  exists "$BASE" || cmd_base
  build "$1" "$2" "$(dirname "$1")" --build-arg BASE_IMAGE="$BASE"
}

case "${1:-}" in
  base) cmd_base ;;
  dockerfile) shift; cmd_dockerfile "$@" ;;
  build) cmd_build ;;
  test) cmd_test ;;
  worker) cmd_worker ;;
  worker-test) cmd_worker_test ;;
  *) echo "usage: tools/images.sh base|build|test|worker|worker-test|dockerfile FILE TAG" >&2; exit 2 ;;
esac
