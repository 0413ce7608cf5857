#!/usr/bin/env bash
# Set up a Debian 12 machine for mkosi: the host tools it runs and a virtual environment with the package.
# Idempotent; run as root (or with sudo). Prints the path of the environment's bin directory.
set -euo pipefail
cd "$(dirname "$0")/.."

# Tools mkosi runs on the host (file systems, verity, partitioning, compression, containers, VMs) and the
# ones the tests use as independent consumers of what we write.
PACKAGES=(
    python3 python3-venv python3-pip
    apt dpkg dpkg-dev debian-archive-keyring ca-certificates
    util-linux fdisk gdisk cpio zstd xz-utils lz4 gzip bzip2 tar
    e2fsprogs btrfs-progs xfsprogs dosfstools mtools erofs-utils squashfs-tools
    cryptsetup-bin openssl gnupg
    systemd-container
    qemu-system-x86 qemu-utils
)

missing=()
for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "Installing: ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
.venv/bin/python -m pip install -q -e '.[dev]'
echo "$(pwd)/.venv/bin"
