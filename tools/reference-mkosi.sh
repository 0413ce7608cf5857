#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Fetch the reference implementation (Debian's "mkosi" package from sid) without installing it and
# without touching the host's apt state, and unpack it into a directory.
#
# usage: tools/reference-mkosi.sh [DESTDIR]     (default: /var/tmp/mkosi-reference)
#
# Prints the PYTHONPATH to use, e.g.
#     PYTHONPATH="$(tools/reference-mkosi.sh | tail -n1)" python3 -m mkosi --json summary
# tests/conformance/regenerate.py looks in /var/tmp/mkosi-reference by default.

set -euo pipefail

dest="${1:-/var/tmp/mkosi-reference}"
pythonpath="$dest/usr/lib/python3/dist-packages"

if [[ -f "$pythonpath/mkosi/__init__.py" && -z "${REFERENCE_MKOSI_FORCE:-}" ]]; then
    echo "reference mkosi already unpacked in $dest (set REFERENCE_MKOSI_FORCE=1 to fetch again)" >&2
    echo "$pythonpath"
    exit 0
fi

for tool in apt-get dpkg; do
    if ! command -v "$tool" >/dev/null; then
        echo "error: $tool is needed (run this on a Debian or Ubuntu machine)" >&2
        exit 1
    fi
done

keyring=/usr/share/keyrings/debian-archive-keyring.gpg
if [[ ! -f "$keyring" ]]; then
    echo "error: $keyring is missing (apt-get install debian-archive-keyring)" >&2
    exit 1
fi

work="$(mktemp -d "${TMPDIR:-/tmp}/reference-mkosi.XXXXXX")"
trap 'rm -rf "$work"' EXIT

mkdir -p "$work/lists/partial" "$work/cache/archives/partial" "$work/download"

cat >"$work/sid.sources" <<EOF
Types: deb
URIs: http://deb.debian.org/debian
Suites: sid
Components: main
Signed-By: $keyring
EOF

# Everything apt reads or writes is redirected into $work: the sources, the package lists and the cache.
# An empty sources.list (not /dev/null: apt rejects that for a .list file) plus SourceParts pointing at the
# one deb822 file keeps the host's own sources out.
: >"$work/empty.list"
mkdir -p "$work/sources.list.d"
cp "$work/sid.sources" "$work/sources.list.d/sid.sources"

apt_opts=(
    -o "Dir::Etc::SourceList=$work/empty.list"
    -o "Dir::Etc::SourceParts=$work/sources.list.d"
    -o "Dir::State::Lists=$work/lists"
    -o "Dir::Cache=$work/cache"
    -o "Dir::State::status=/dev/null"
    -o "APT::Get::List-Cleanup=0"
    -o "Debug::NoLocking=1"
    -o "APT::Sandbox::User=root"
)

echo "updating the sid package list in $work ..." >&2
apt-get "${apt_opts[@]}" -qq update >&2

echo "downloading mkosi ..." >&2
(cd "$work/download" && apt-get "${apt_opts[@]}" -qq download mkosi >&2)

deb="$(find "$work/download" -maxdepth 1 -name 'mkosi_*.deb' | head -n1)"
if [[ -z "$deb" ]]; then
    echo "error: apt-get download produced no mkosi_*.deb" >&2
    exit 1
fi

echo "unpacking $(basename "$deb") into $dest ..." >&2
rm -rf "$dest"
mkdir -p "$dest"
dpkg -x "$deb" "$dest"
cp "$deb" "$dest/"

if [[ ! -f "$pythonpath/mkosi/__init__.py" ]]; then
    echo "error: $pythonpath/mkosi not found after unpacking" >&2
    exit 1
fi

version="$(dpkg-deb -f "$deb" Version)"
echo "reference mkosi $version is in $dest" >&2
echo "use: PYTHONPATH=$pythonpath python3 -m mkosi ..." >&2
echo "$pythonpath"
