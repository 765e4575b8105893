#!/usr/bin/env bash
# Installs the build tree into a temporary prefix, then builds and runs an integrator's program
# against the installed copy only (find_package and pkg-config), with no Bastion environment.
set -euo pipefail
build_dir=$1
src_dir=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cmake --install "$build_dir" --prefix "$work/prefix" >/dev/null
unset BASTION_BACKEND_PATH BASTION_BACKENDS BASTION_BACKENDS_DISABLE
libdir=$(ls -d "$work"/prefix/lib*/ | head -1)
export PKG_CONFIG_PATH="${libdir}pkgconfig"
# Build the consumer without the sanitizer flags of the tree under test: it only links.
env -u CFLAGS -u LDFLAGS cmake -S "$src_dir/consumer" -B "$work/build" \
    -DCMAKE_PREFIX_PATH="$work/prefix" -DCMAKE_BUILD_RPATH="$libdir" >/dev/null
cmake --build "$work/build" >/dev/null
"$work/build/consumer_cmake"
"$work/build/consumer_pkgconfig"
test -x "$work/prefix/bin/bastion"
"$work/prefix/bin/bastion" backends | grep -q "cpu"
echo "install check passed"
