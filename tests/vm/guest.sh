#!/bin/bash
# SPDX-License-Identifier: MIT
#
# guest.sh - build the tiny guest that the VM test tier boots under QEMU.
#
# The guest is Debian's cloud kernel plus an initramfs holding a static
# busybox, the virtio modules, the agent under test (as /sbin/agent) with its
# shared libraries, and tests/vm/initramfs/{init,shutdown}.  Nothing is
# installed on the host: the kernel, busybox-static and qemu-guest-agent .debs
# are fetched with `apt-get download` and unpacked with `dpkg-deb -x` into a
# cache directory, which later runs reuse (see tests/vm/README.md).
#
# Usage:
#   guest.sh setup                    fetch and unpack what is missing (idempotent)
#   guest.sh paths                    setup, then print KEY=VALUE lines (KERNEL, KVER,
#                                     KROOT, BUSYBOX, QEMU_GA, DATA_BASE)
#   guest.sh initrd AGENT OUT.gz [SRC:DEST[:MODE]...]
#                                     initramfs with AGENT as /sbin/agent; each extra
#                                     spec copies host file or directory SRC to DEST
#                                     inside the initramfs (MODE: chmod, e.g. 755)
#   guest.sh datadisk OUT.qcow2       qcow2 overlay on the cached 1 GiB ext4 data disk
#
# Environment: QUIESCE_VM_CACHE (default /var/tmp/quiesce-vm).
#
# Limits: the libraries of a dynamic AGENT are copied from the host (found with
# ldd), so the host must be the same Debian release as the guest userland is
# meant to be, and must have them installed (tests/vm/packages.txt).
set -euo pipefail

CACHE=${QUIESCE_VM_CACHE:-/var/tmp/quiesce-vm}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
KMETA=linux-image-cloud-amd64
# Bump when the data disk's content changes; old bases are then left unused.
DATA_BASE=$CACHE/data-base-v1.qcow2
MODULES=(virtio_pci virtio_blk virtio_console)

die() { echo "guest.sh: $*" >&2; exit 1; }
log() { echo "guest.sh: $*" >&2; }

# Serialise everything that writes the cache: two pytest sessions (or the two
# agents' fixtures) may run setup at the same time.
lock_cache() {
	mkdir -p "$CACHE"
	exec 9>"$CACHE/.lock"
	flock 9
}

candidate() { # PKG -> candidate version from the local apt lists, or nothing
	apt-cache policy "$1" 2>/dev/null | awk '/Candidate:/ && $2 != "(none)" {print $2}'
}

# A fresh container may have no apt lists at all: fetch them once (as root)
# rather than fail, unless something is cached already.
ensure_lists() {
	if [ -z "$(candidate busybox-static)" ] && [ ! -f "$CACHE/kernel-pkg" ] &&
		[ "$(id -u)" -eq 0 ]; then
		log "no apt lists; running apt-get update"
		apt-get update -q >&2 || true
	fi
}

# fetch PKG: make $CACHE/pkg/PKG the unpacked candidate version of PKG.
# A cached unpack of another version is kept (with a warning) when the new one
# cannot be downloaded, so an offline rerun still works.
fetch() {
	local pkg=$1 dir=$CACHE/pkg/$1 ver tmp
	ver=$(candidate "$pkg")
	if [ -z "$ver" ]; then
		[ -f "$dir/.version" ] || die "apt knows no version of $pkg (run apt-get update?)"
		log "apt knows no version of $pkg; using cached $(cat "$dir/.version")"
		return 0
	fi
	if [ -f "$dir/.version" ] && [ "$(cat "$dir/.version")" = "$ver" ]; then
		return 0
	fi
	mkdir -p "$CACHE/debs" "$CACHE/pkg"
	tmp=$(mktemp -d "$CACHE/dl.XXXXXX")
	# APT::Sandbox::User=root: the _apt user could not write the mktemp dir.
	if ! (cd "$tmp" && apt-get -q -o APT::Sandbox::User=root download "$pkg=$ver" >&2); then
		rm -rf "$tmp"
		[ -f "$dir/.version" ] || die "apt-get download $pkg=$ver failed"
		log "download of $pkg=$ver failed; using cached $(cat "$dir/.version")"
		return 0
	fi
	rm -f "$CACHE/debs/${pkg}"_*.deb
	mv "$tmp"/*.deb "$CACHE/debs/"
	rm -rf "$tmp" "$dir.new"
	dpkg-deb -x "$CACHE/debs/${pkg}"_*.deb "$dir.new"
	echo "$ver" >"$dir.new/.version"
	rm -rf "$dir"
	mv "$dir.new" "$dir"
	log "unpacked $pkg $ver"
}

kernel_pkg() { # the versioned linux-image-* package the metapackage depends on
	local k
	k=$(apt-cache depends "$KMETA" 2>/dev/null | awk '/Depends: linux-image-/ {print $2; exit}')
	if [ -z "$k" ]; then # no apt lists: fall back to whatever is cached
		k=$(cat "$CACHE/kernel-pkg" 2>/dev/null) || die "cannot resolve $KMETA (run apt-get update?)"
	fi
	echo "$k"
}

# Fingerprint of the apt lists: when it matches the one recorded by the last
# complete setup, nothing new can be fetched, so setup skips apt-cache (which
# takes ~0.7 s a call).
lists_fingerprint() {
	{
		echo "$DATA_BASE"
		stat -c '%n %Y %s' /var/lib/apt/lists/*Packages* 2>/dev/null || true
	} | md5sum | cut -d' ' -f1
}

do_setup() {
	local kpkg kroot kver fp old
	lock_cache
	fp=$(lists_fingerprint)
	if [ -f "$CACHE/setup-done" ] && [ "$(cat "$CACHE/setup-done")" = "$fp" ] &&
		[ -f "$DATA_BASE" ] && [ -f "$CACHE/pkg/$(cat "$CACHE/kernel-pkg" 2>/dev/null)/.version" ] &&
		[ -f "$CACHE/pkg/busybox-static/.version" ] &&
		[ -f "$CACHE/pkg/qemu-guest-agent/.version" ]; then
		exec 9>&-
		return 0
	fi
	rm -f "$CACHE/setup-done"
	ensure_lists
	kpkg=$(kernel_pkg)
	fetch "$kpkg"
	echo "$kpkg" >"$CACHE/kernel-pkg"
	for old in "$CACHE"/pkg/linux-image-*; do # kernels of earlier runs
		[ "$old" = "$CACHE/pkg/$kpkg" ] || rm -rf "$old" "$CACHE/debs/${old##*/}"_*.deb
	done
	fetch busybox-static
	fetch qemu-guest-agent
	kroot=$CACHE/pkg/$kpkg
	kver=$(module_version "$kroot")
	# The .deb ships no modules.dep (it is made at install time).
	if [ ! -f "$kroot/lib/modules/$kver/modules.dep" ]; then
		depmod -b "$kroot" "$kver"
	fi
	[ -f "$DATA_BASE" ] || make_data_base
	lists_fingerprint >"$CACHE/setup-done" # after a possible apt-get update
	exec 9>&-
}

module_version() { # KROOT -> the one version directory under lib/modules
	local d
	d=$(find "$1/lib/modules" -mindepth 1 -maxdepth 1 -type d | head -n1)
	[ -n "$d" ] || die "no lib/modules/* in $1"
	basename "$d"
}

print_paths() {
	local kpkg kroot kver kernel
	kpkg=$(cat "$CACHE/kernel-pkg")
	kroot=$CACHE/pkg/$kpkg
	kver=$(module_version "$kroot")
	kernel=$kroot/boot/vmlinuz-$kver
	[ -f "$kernel" ] || die "no $kernel"
	echo "KERNEL=$kernel"
	echo "KVER=$kver"
	echo "KROOT=$kroot"
	echo "BUSYBOX=$CACHE/pkg/busybox-static/bin/busybox"
	echo "QEMU_GA=$CACHE/pkg/qemu-guest-agent/usr/sbin/qemu-ga"
	echo "DATA_BASE=$DATA_BASE"
}

# The data disk: 1 GiB ext4 made without a loop device (mkfs.ext4 -d), with a
# marker file and 8 MiB of random data plus its checksum for later tiers.
make_data_base() {
	local tmp
	tmp=$(mktemp -d "$CACHE/data.XXXXXX")
	mkdir -p "$tmp/seed/files"
	echo "quiesce-vm-data marker-v1" >"$tmp/seed/marker.txt"
	head -c 8M /dev/urandom >"$tmp/seed/files/rand0.bin"
	(cd "$tmp/seed" && sha256sum files/rand0.bin >SHA256SUMS)
	truncate -s 1G "$tmp/data.raw"
	mkfs.ext4 -q -F -L data -d "$tmp/seed" "$tmp/data.raw"
	qemu-img convert -f raw -O qcow2 "$tmp/data.raw" "$tmp/data.qcow2"
	mv "$tmp/data.qcow2" "$DATA_BASE"
	rm -rf "$tmp"
	log "made $DATA_BASE"
}

do_datadisk() {
	local out=$1
	do_setup
	qemu-img create -q -f qcow2 -F qcow2 -b "$DATA_BASE" "$out"
}

# copy_libs BINARY ROOT: the shared libraries BINARY needs (by ldd), at the
# same paths under ROOT.  A static binary needs none.
copy_libs() {
	local bin=$1 root=$2 out lib
	if ! out=$(ldd "$bin" 2>&1); then
		case $out in
		*"not a dynamic executable"*) return 0 ;;
		*) die "ldd $bin failed: $out" ;;
		esac
	fi
	if grep -q "not found" <<<"$out"; then
		die "$bin needs libraries the host lacks (see tests/vm/packages.txt):"$'\n'"$out"
	fi
	awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}' <<<"$out" |
		while read -r lib; do
			mkdir -p "$root$(dirname "$lib")"
			cp -L "$lib" "$root$lib"
		done
}

# add_extra ROOT SRC:DEST[:MODE]
add_extra() {
	local root=$1 spec=$2 src dest mode
	IFS=: read -r src dest mode <<<"$spec"
	if [ -z "$src" ] || [ -z "$dest" ]; then
		die "bad extra file spec '$spec' (want SRC:DEST[:MODE])"
	fi
	[ -e "$src" ] || die "extra file '$src' does not exist"
	case $dest in /*) ;; *) die "extra file destination '$dest' must be absolute" ;; esac
	mkdir -p "$root$(dirname "$dest")"
	cp -a -- "$src" "$root$dest"
	if [ -n "$mode" ]; then chmod -- "$mode" "$root$dest"; fi
}

do_initrd() {
	local agent=$1 out=$2 paths kroot kver busybox r ko a spec
	shift 2
	[ -f "$agent" ] || die "agent binary '$agent' not found"
	[ -x "$agent" ] || die "agent binary '$agent' is not executable"
	do_setup
	paths=$(print_paths)
	kroot=$(sed -n 's/^KROOT=//p' <<<"$paths")
	kver=$(sed -n 's/^KVER=//p' <<<"$paths")
	busybox=$(sed -n 's/^BUSYBOX=//p' <<<"$paths")
	r=$(mktemp -d "${TMPDIR:-/tmp}/qvm-initrd.XXXXXX")
	# shellcheck disable=SC2064  # expand $r now
	trap "rm -rf '$r'" EXIT
	mkdir -p "$r"/{bin,sbin,dev,proc,sys,run,tmp,mnt/data,etc/qemu,root,"lib/modules/$kver"}
	ln -s ../run "$r/var"
	mkdir -p "$r/run/lock"

	# Applet links in one process (perl-base is essential in Debian): an ln
	# per applet costs ~1.3 s of forks, `busybox --install` in /init ~0.3 s of
	# boot under TCG.
	cp "$busybox" "$r/bin/busybox"
	# shellcheck disable=SC2046  # one applet name per word
	perl -e 'chdir shift or die; for (@ARGV) { -e or symlink "busybox", $_ or die "$_: $!" }' \
		"$r/bin" $("$busybox" --list)

	# Modules: whatever modprobe says the three drivers need, at the same
	# paths, then a fresh modules.dep for busybox modprobe in /init.
	for ko in $(modprobe -d "$kroot" -S "$kver" -a --show-depends "${MODULES[@]}" |
		awk '$1 == "insmod" {print $2}' | sort -u); do
		mkdir -p "$r$(dirname "${ko#"$kroot"}")"
		cp "$ko" "$r${ko#"$kroot"}"
	done
	for a in modules.builtin modules.builtin.modinfo modules.order; do
		cp "$kroot/lib/modules/$kver/$a" "$r/lib/modules/$kver/"
	done
	depmod -b "$r" "$kver"

	cp "$agent" "$r/sbin/agent"
	chmod 755 "$r/sbin/agent"
	copy_libs "$agent" "$r"
	install -m 755 "$HERE/initramfs/init" "$r/init"
	install -m 755 "$HERE/initramfs/shutdown" "$r/sbin/shutdown"
	for spec in "$@"; do add_extra "$r" "$spec"; done

	mkdir -p "$(dirname "$out")"
	(cd "$r" && find . -print0 | cpio --null -o -H newc --quiet -R 0:0 | gzip -1) >"$out.tmp"
	mv "$out.tmp" "$out"
}

usage() {
	sed -n '/^# Usage:/,/^# Environment/p' "$0" | sed 's/^# \{0,1\}//' >&2
	exit 2
}

[ $# -ge 1 ] || usage
cmd=$1
shift
case $cmd in
setup) [ $# -eq 0 ] || usage; do_setup ;;
paths) [ $# -eq 0 ] || usage; do_setup; print_paths ;;
initrd) [ $# -ge 2 ] || usage; do_initrd "$@" ;;
datadisk) [ $# -eq 1 ] || usage; do_datadisk "$1" ;;
*) usage ;;
esac
