#!/bin/sh
# Build the loginapp image locally: wheelhouse for the base image's Python, then
# docker build with that base.
#
#   app/build-image.sh [IMAGE_TAG] [BASE_IMAGE] [PYTHON_VERSION]
#   app/build-image.sh loginapp:latest loginapp/base:bookworm 3.11
#
# Without a registry, make the base image first, e.g.:
#   debootstrap --variant=minbase bookworm /tmp/bookworm http://deb.debian.org/debian
#   tar -C /tmp/bookworm -c . | docker import - loginapp/base:bookworm
set -eu

tag=${1:-loginapp:latest}
base=${2:-debian:bookworm-slim}
case "$base" in
    *trixie*) default_py=3.13 ;;
    *) default_py=3.11 ;;
esac
py_version=${3:-$default_py}
here=$(cd "$(dirname "$0")" && pwd)

case "$(uname -m)" in
    aarch64|arm64) arch=aarch64 ;;
    *) arch=x86_64 ;;
esac

# The uid the deployment runs the app as, from its one definition.
uid=$(sed -n 's/^loginapp_app_uid: *//p' "$here/../roles/loginapp/defaults/main.yml")

rm -rf "$here/wheelhouse"
"$here/build-wheelhouse.sh" "$py_version" "$arch" "$here/wheelhouse"
docker build --build-arg BASE_IMAGE="$base" --build-arg APP_UID="$uid" -t "$tag" "$here"
echo "built $tag from $base (CPython $py_version)"
