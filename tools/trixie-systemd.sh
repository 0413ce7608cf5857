#!/usr/bin/env bash
# Unpack Debian trixie's systemd tools (systemd-dissect, systemd-repart, ...) into a directory, without
# installing anything: the packages are fetched with `apt-get download` against a private sources list,
# keyring and state, and unpacked with `dpkg -x`. The host's apt configuration and dpkg database are never
# touched.
#
#   tools/trixie-systemd.sh [DIR]        (default: /var/tmp/mkosi-trixie-systemd)
#
# Prints the path of a wrapper directory as its last line; its programs run the unpacked binaries through
# the unpacked dynamic loader:   "$(tools/trixie-systemd.sh | tail -n1)/systemd-dissect" --json=pretty IMAGE
# Re-running reuses what is already there.
set -euo pipefail

dir=${1:-/var/tmp/mkosi-trixie-systemd}
mirror=${TRIXIE_MIRROR:-http://deb.debian.org/debian}
keyring=/usr/share/keyrings/debian-archive-trixie-stable.gpg
[ -e "$keyring" ] || keyring=/usr/share/keyrings/debian-archive-keyring.gpg

root=$dir/root
bin=$dir/bin
if [ -x "$bin/systemd-dissect" ] && [ -e "$dir/.complete" ]; then
    echo "$bin"
    exit 0
fi

mkdir -p "$dir/state/lists/partial" "$dir/cache/archives/partial" "$dir/debs" "$dir/empty" "$root" "$bin"
echo "deb [signed-by=$keyring] $mirror trixie main" >"$dir/sources.list"
: >"$dir/status"

apt_opts=(
    -o "Dir::Etc::SourceList=$dir/sources.list"
    -o "Dir::Etc::SourceParts=$dir/empty"
    -o "Dir::Etc::Preferences=$dir/empty/preferences"
    -o "Dir::Etc::PreferencesParts=$dir/empty"
    -o "Dir::State=$dir/state"
    -o "Dir::State::Status=$dir/status"
    -o "Dir::Cache=$dir/cache"
    -o "APT::Architecture=$(dpkg --print-architecture)"
    -o "APT::Get::List-Cleanup=false"
    -o "Debug::NoLocking=true"
    -o "APT::Sandbox::User=root"
)

apt-get "${apt_opts[@]}" -q update >&2

# The tools and every library they link against or dlopen(): the lib* packages among the Depends,
# PreDepends and Recommends of the tools' packages, followed three levels down. systemd-dissect is in
# systemd-container, systemd-repart in its own package.
wanted=(systemd systemd-container systemd-repart libsystemd-shared libc6 libssl3t64 libcryptsetup12 libfdisk1
    libblkid1 libmount1)
declare -A seen=()
level=("${wanted[@]}")
for _ in 1 2 3 4; do
    for pkg in "${level[@]}"; do seen[$pkg]=1; done
    next=()
    while read -r dep; do
        [ -z "${seen[$dep]:-}" ] && next+=("$dep")
    done < <(apt-cache "${apt_opts[@]}" depends --no-suggests --no-conflicts --no-breaks --no-replaces \
        --no-enhances "${level[@]}" 2>/dev/null |
        sed -n 's/^ *|\?\(Pre\)\?\(Depends\|Recommends\): \(lib[^ <>]*\).*/\3/p' | sort -u)
    level=("${next[@]}")
    [ ${#level[@]} -eq 0 ] && break
done
for pkg in "${level[@]}"; do seen[$pkg]=1; done

# Keep only packages that exist for this architecture (virtual names have no candidate).
mapfile -t packages < <(apt-cache "${apt_opts[@]}" show --no-all-versions "${!seen[@]}" 2>/dev/null |
    sed -n 's/^Package: //p' | sort -u)

(cd "$dir/debs" && apt-get "${apt_opts[@]}" -q download "${packages[@]}" >&2)
for deb in "$dir"/debs/*.deb; do
    dpkg -x "$deb" "$root"
done

multiarch=$(dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || echo x86_64-linux-gnu)
loader=$(find "$root/usr/lib/$multiarch" "$root/usr/lib64" -maxdepth 1 -name 'ld-linux*.so.*' 2>/dev/null | head -n1)
if [ -z "$loader" ]; then
    echo "no dynamic loader in $root" >&2
    exit 1
fi
libpath="$root/usr/lib/$multiarch:$root/usr/lib/$multiarch/systemd:$root/lib/$multiarch"

for tool in systemd-dissect systemd-repart systemd-sysext systemd-id128; do
    target=$root/usr/bin/$tool
    [ -x "$target" ] || continue
    cat >"$bin/$tool" <<EOF
#!/bin/sh
exec "$loader" --library-path "$libpath" --argv0 $tool "$target" "\$@"
EOF
    chmod +x "$bin/$tool"
done
touch "$dir/.complete"
echo "$bin"
