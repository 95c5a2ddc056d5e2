#!/usr/bin/env bash
# Installs what MeshLM needs on a Debian 12 machine (Open MPI, OpenBLAS, HDF5, zstd) and checks
# the Swift toolchain. Idempotent: a package already installed and configured is left alone.
set -euo pipefail

packages=(libopenmpi-dev openmpi-bin libopenblas-dev libhdf5-dev libzstd-dev pkg-config)
missing=()
for package in "${packages[@]}"; do
    # "install ok installed" only: some images hold packages unpacked but never configured.
    status=$(dpkg-query -W -f='${Status}' "$package" 2>/dev/null || true)
    [ "$status" = "install ok installed" ] || missing+=("$package")
done

if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing ${missing[*]}"
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update -qq -o DPkg::Lock::Timeout=600
    $sudo apt-get install -y -qq -o DPkg::Lock::Timeout=600 "${missing[@]}" >/dev/null
fi

if ! command -v swift >/dev/null 2>&1; then
    for candidate in /opt/swift/usr/bin /usr/share/swift/usr/bin; do
        [ -x "$candidate/swift" ] && export PATH="$candidate:$PATH"
    done
fi
command -v swift >/dev/null 2>&1 || { echo "setup: no Swift toolchain on PATH (Swift 6 is required: swift.org/install)" >&2; exit 1; }
for module in ompi-c openblas hdf5-serial libzstd; do
    pkg-config --exists "$module" || { echo "setup: pkg-config cannot find $module after installing" >&2; exit 1; }
done
echo "setup: $(swift --version 2>/dev/null | head -1); Open MPI $(pkg-config --modversion ompi-c); OpenBLAS $(pkg-config --modversion openblas); HDF5 $(pkg-config --modversion hdf5-serial); zstd $(pkg-config --modversion libzstd)"
