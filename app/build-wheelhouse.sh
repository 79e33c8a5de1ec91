#!/bin/sh
# Download the pinned, hashed wheels an image needs, for the image's Python and
# CPU rather than this machine's, so the image build needs no index (and no TLS).
#
#   app/build-wheelhouse.sh PYTHON_VERSION ARCH OUTDIR
#   app/build-wheelhouse.sh 3.11 x86_64 app/wheelhouse     # Debian bookworm
#   app/build-wheelhouse.sh 3.13 aarch64 /tmp/wh            # Debian trixie, arm64
set -eu

if [ "$#" -ne 3 ]; then
    echo "usage: $0 PYTHON_VERSION ARCH OUTDIR   (e.g. 3.11 x86_64 app/wheelhouse)" >&2
    exit 2
fi
py_version=$1
arch=$2
outdir=$3
here=$(cd "$(dirname "$0")" && pwd)
pip=${PIP:-python3 -m pip}

case "$arch" in
    x86_64|amd64) arch=x86_64 ;;
    aarch64|arm64) arch=aarch64 ;;
    *) echo "unsupported ARCH $arch (x86_64 or aarch64)" >&2; exit 2 ;;
esac

# Every glibc baseline up to Debian trixie's 2.41; bookworm has 2.36. pip takes
# any wheel tagged for one of these, and pure-Python wheels anyway.
platforms="manylinux2014_$arch"
for glibc in 17 24 26 27 28 31 34 35 36 38 39 41; do
    platforms="$platforms manylinux_2_${glibc}_$arch"
done
platform_args=""
for p in $platforms; do
    platform_args="$platform_args --platform $p"
done

mkdir -p "$outdir"
# Ignore machine-wide pip settings (local find-links or mirrors holding rebuilt
# wheels would not match the hashes); PIP_INDEX_URL still selects a mirror.
# shellcheck disable=SC2086
env -u PIP_FIND_LINKS -u PIP_EXTRA_INDEX_URL -u PIP_CONSTRAINT PIP_CONFIG_FILE=/dev/null \
    $pip download --only-binary=:all: $platform_args \
    --python-version "$py_version" --implementation cp \
    --require-hashes -r "$here/requirements.txt" -r "$here/requirements-build.txt" \
    -d "$outdir"
# Marks a finished download: the images role reuses a complete wheelhouse.
touch "$outdir/.complete"
echo "wheelhouse for CPython $py_version/$arch in $outdir:"
ls "$outdir"
