# shellcheck shell=sh
# deps.sh - the one list of Debian packages smtpgw needs to build and test,
# and the check that the tools installed from it can do what the tests ask.
#
# Source it, then call smtpgw_install_deps (needs root when something is
# missing; does nothing, not even apt-get update, when all is installed),
# then smtpgw_check_tools LAYER... (one line per missing feature; returns 1
# if any).  POSIX sh, so scripts in any shell can source it.
#
# Packages are installed without their Recommends (--no-install-recommends),
# so everything a test relies on must be listed here, Recommends included:
# swaks does TLS only with Net::SSLeay and IPv6 only with IO::Socket::INET6,
# both merely recommended by Debian's swaks.  A machine that happens to have
# a package hides a missing line here: smtpgw_check_tools tests features
# (swaks --support, a throwaway ruleset in a throwaway namespace, a
# libFuzzer link), not package names.

SMTPGW_DEPS="meson ninja-build pkg-config gcc libssl-dev libmnl-dev
libnetfilter-queue-dev libcmocka-dev libcap-dev libnftables-dev libjson-c-dev
libpcre2-dev libmagic-dev libarchive-dev nftables iptables iproute2
procps swaks libnet-ssleay-perl libio-socket-ssl-perl libio-socket-inet6-perl
openssl ca-certificates postfix python3-pytest python3-aiosmtpd
python3-cryptography clang libclang-rt-14-dev
libopendkim-dev clamav-daemon rspamd
busybox-static testssl.sh sslsplit tcpdump
make binutils kmod cpio zstd mtools dosfstools fdisk e2fsprogs systemd-boot-efi
qemu-system-x86 ovmf openssh-client"
# (the last two lines: the appliance image -- initramfs/, image/ -- and the
# QEMU testbed, tests/testbed/qemu-gw)

# Print the packages from SMTPGW_DEPS that are not installed, one a line.
smtpgw_missing_deps() {
	for _p in $SMTPGW_DEPS; do
		_s=$(dpkg-query -W -f='${db:Status-Status}' "$_p" 2>/dev/null) || _s=
		[ "$_s" = installed ] || echo "$_p"
	done
}

smtpgw_install_deps() {
	_missing=$(smtpgw_missing_deps)
	[ -n "$_missing" ] || return 0
	if [ "$(id -u)" != 0 ]; then
		# shellcheck disable=SC2086 # one line, words joined
		echo "smtpgw_install_deps: missing packages, run as root:" $_missing >&2
		return 1
	fi
	# shellcheck disable=SC2086
	echo "installing:" $_missing >&2
	# Postfix only as software: no system instance, no main.cf.
	echo "postfix postfix/main_mailer_type select No configuration" |
		debconf-set-selections
	DEBIAN_FRONTEND=noninteractive apt-get update -q || return 1
	# shellcheck disable=SC2086
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
		--no-install-recommends $_missing || return 1
}

# ------------------------------------------------------------ features

# _ck_fail WHAT REASON: one line saying what cannot work and why.
_ck_fail() {
	echo "missing: $1: $2" >&2
	_ck_bad=$((_ck_bad + 1))
}

_ck_cmd() { # COMMAND PACKAGE [WHAT]
	command -v "$1" >/dev/null 2>&1 && return 0
	_ck_fail "${3:-$1}" "$1 not found (package $2)"
	return 1
}

_ck_file() { # FILE PACKAGE WHAT
	[ -e "$1" ] && return 0
	_ck_fail "$3" "$1 not found (package $2)"
	return 1
}

# The build: compiler and the libraries meson looks for.
_ck_build() {
	_ck_cmd meson meson
	_ck_cmd ninja ninja-build
	_ck_cmd gcc gcc
	_ck_cmd pkg-config pkg-config || return 0
	for _l in libssl:libssl-dev libmnl:libmnl-dev libnetfilter_queue:libnetfilter-queue-dev \
		cmocka:libcmocka-dev libcap:libcap-dev; do
		pkg-config --exists "${_l%%:*}" 2>/dev/null ||
			_ck_fail "build" "pkg-config finds no ${_l%%:*} (package ${_l#*:})"
	done
}

# A program built with the sanitizers runs (the asan layer).
_ck_asan() {
	command -v gcc >/dev/null 2>&1 || return 0
	printf 'int main(void) { return 0; }\n' >"$_ck_tmp/a.c"
	if ! gcc -fsanitize=address,undefined -o "$_ck_tmp/a" "$_ck_tmp/a.c" >"$_ck_tmp/a.log" 2>&1; then
		_ck_fail "ASan/UBSan" "gcc cannot link -fsanitize=address,undefined: $(head -n 1 "$_ck_tmp/a.log")"
	elif ! "$_ck_tmp/a" >"$_ck_tmp/a.log" 2>&1; then
		_ck_fail "ASan/UBSan" "a sanitized program does not run: $(head -n 1 "$_ck_tmp/a.log")"
	fi
}

# clang links a libFuzzer target with ASan/UBSan (the fuzz layer).
_ck_fuzz() {
	_ck_cmd clang clang "fuzzing" || return 0
	printf '#include <stddef.h>\n#include <stdint.h>\nint LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) { (void)d; (void)n; return 0; }\n' \
		>"$_ck_tmp/f.c"
	if ! clang -fsanitize=fuzzer,address,undefined -o "$_ck_tmp/f" "$_ck_tmp/f.c" >"$_ck_tmp/f.log" 2>&1; then
		_ck_fail "fuzzing" "clang cannot link a libFuzzer target (libFuzzer runtime: package libclang-rt-14-dev): $(grep -m 1 -i error "$_ck_tmp/f.log")"
	elif ! "$_ck_tmp/f" -runs=1 >"$_ck_tmp/f.log" 2>&1; then
		_ck_fail "fuzzing" "a libFuzzer target does not run: $(tail -n 1 "$_ck_tmp/f.log")"
	fi
}

# Debian's Python (tests/cli, tests/e2e, tests/appliance).
_ck_python() {
	[ -x /usr/bin/python3 ] || { _ck_fail "/usr/bin/python3" "not found (package python3)"; return 0; }
	/usr/bin/python3 -c 'import pytest' 2>/dev/null ||
		_ck_fail "/usr/bin/python3" "cannot import pytest (package python3-pytest)"
	/usr/bin/python3 -c 'import aiosmtpd' 2>/dev/null ||
		_ck_fail "/usr/bin/python3" "cannot import aiosmtpd (package python3-aiosmtpd)"
}

# The CLI tests read certificates with python3-cryptography (test_cert.py
# would skip those checks without it).
_ck_cli_python() {
	/usr/bin/python3 -c 'import cryptography.x509' 2>/dev/null ||
		_ck_fail "/usr/bin/python3" "cannot import cryptography.x509 (package python3-cryptography)"
}

# The CLI tests run smtpgwctl under busybox ash, as on the box.
_ck_cli() {
	_ck_python
	[ -x /usr/bin/python3 ] && _ck_cli_python
	if ! busybox ash -c 'exit 0' >/dev/null 2>&1; then
		_ck_fail "busybox ash" "busybox not found or has no ash (package busybox-static); tests/cli would run smtpgwctl under another shell"
	fi
	_ck_cmd openssl openssl "smtpgwctl cert"
}

# swaks: TLS (Net::SSLeay; --tls-sni) and IPv6 (IO::Socket::INET6).
_ck_swaks() {
	_ck_cmd swaks swaks || return 0
	swaks --support >"$_ck_tmp/swaks" 2>&1
	for _f in "TLS:libnet-ssleay-perl libio-socket-ssl-perl" "IPv6:libio-socket-inet6-perl"; do
		_n=${_f%%:*}
		grep -q "^=== $_n supported" "$_ck_tmp/swaks" ||
			_ck_fail "swaks" "$(sed -n "s/^\*\*\* \($_n not available.*\)/\1/p" "$_ck_tmp/swaks" | head -n 1 |
				grep . || echo "$_n not supported") (packages ${_f#*:})"
	done
	perl -MIO::Socket::SSL -e 1 2>/dev/null ||
		_ck_fail "perl" "IO::Socket::SSL missing (package libio-socket-ssl-perl)"
}

# What the gateway's ruleset needs from the kernel and nft, tried in a
# throwaway network namespace: tproxy, socket, and SYN queueing (nft queue
# or, where the kernel lacks it, iptables-nft's NFQUEUE target).
_ck_netfilter() {
	_ck_cmd nft nftables || return 0
	_ck_cmd unshare util-linux "namespaces" || return 0
	if [ "$(id -u)" != 0 ]; then
		_ck_fail "netfilter" "cannot probe the kernel's nftables features without root"
		return 0
	fi
	printf '%s\n' 'table inet smtpgw_probe {' '	chain p {' \
		'		type filter hook prerouting priority mangle; policy accept;' \
		'		meta l4proto tcp socket transparent 1 accept' \
		'		meta nfproto ipv4 meta l4proto tcp tcp dport 9 tproxy ip to 127.0.0.1:9 accept' \
		'		meta nfproto ipv6 meta l4proto tcp tcp dport 9 tproxy ip6 to [::1]:9 accept' \
		'		tcp dport 9 reject with tcp reset' '	}' '}' >"$_ck_tmp/tproxy.nft"
	unshare -n nft -f "$_ck_tmp/tproxy.nft" >"$_ck_tmp/nft.log" 2>&1 ||
		_ck_fail "nft" "the kernel or nft lacks tproxy/socket/reject (nft_tproxy, nft_socket, nft_reject): $(grep -m 1 -i error "$_ck_tmp/nft.log")"
	printf '%s\n' 'table inet smtpgw_probe {' '	chain q {' \
		'		type filter hook prerouting priority mangle; policy accept;' \
		'		tcp dport 9 queue flags bypass to 9' '	}' '}' >"$_ck_tmp/queue.nft"
	if ! unshare -n nft -f "$_ck_tmp/queue.nft" >/dev/null 2>&1; then
		if ! command -v iptables-nft >/dev/null 2>&1; then
			_ck_fail "SYN queueing" "the kernel has no nft queue and iptables-nft is missing (package iptables)"
		elif ! unshare -n iptables-nft -t mangle -A PREROUTING -p tcp --dport 9 -j NFQUEUE \
			--queue-num 9 --queue-bypass >"$_ck_tmp/ipt.log" 2>&1; then
			_ck_fail "SYN queueing" "neither nft queue nor iptables-nft NFQUEUE works: $(head -n 1 "$_ck_tmp/ipt.log")"
		fi
	fi
}

# The network-namespace testbed with Postfix (tests/e2e, the demo).
_ck_e2e() {
	_ck_python
	_ck_swaks
	_ck_netfilter
	_ck_cmd openssl openssl
	if command -v openssl >/dev/null 2>&1; then
		openssl s_client -help 2>&1 | grep -q starttls ||
			_ck_fail "openssl" "s_client has no -starttls (package openssl)"
	fi
	if command -v ip >/dev/null 2>&1; then
		ip -V 2>/dev/null | grep -q iproute2 ||
			_ck_fail "ip" "$(command -v ip) is not iproute2's (no netns, no rule fwmark: package iproute2)"
	else
		_ck_fail "ip" "not found (package iproute2)"
	fi
	_ck_cmd ss iproute2
	_ck_cmd sysctl procps
	_ck_cmd postfix postfix
	for _b in /usr/lib/postfix/sbin/master /usr/sbin/postconf /usr/sbin/postsuper /usr/sbin/sendmail; do
		_ck_file "$_b" postfix "Postfix"
	done
	_ck_cmd testssl testssl.sh
	_ck_cmd timeout coreutils
}

# bench/run --smoke (the harness in CI): smtp-source and smtp-sink, the
# peer proxy, tcpdump, the namespace testbed's tools (_ck_e2e).
_ck_bench() {
	_ck_file /usr/sbin/smtp-source postfix "bench/run (load generator)"
	_ck_file /usr/sbin/smtp-sink postfix "bench/run (discarding server)"
	_ck_cmd sslsplit sslsplit "bench/run (the peer proxy)"
	_ck_cmd tcpdump tcpdump "bench/run (the SYN flood's timing)"
}

# The appliance: its image (initramfs/, image/) and QEMU.
_ck_appliance() {
	for _t in apt-get:apt apt-cache:apt dpkg-deb:dpkg depmod:kmod modprobe:kmod readelf:binutils \
		cpio:cpio zstd:zstd make:make sfdisk:fdisk mkfs.vfat:dosfstools mmd:mtools mcopy:mtools \
		mke2fs:e2fsprogs debugfs:e2fsprogs ssh:openssh-client ssh-keygen:openssh-client; do
		_ck_cmd "${_t%%:*}" "${_t#*:}" "appliance image/testbed"
	done
	_ck_file /usr/lib/systemd/boot/efi/systemd-bootx64.efi systemd-boot-efi "disk image"
	_ck_file /usr/share/OVMF/OVMF_CODE_4M.fd ovmf "UEFI boot"
	_ck_file /usr/share/OVMF/OVMF_VARS_4M.fd ovmf "UEFI boot"
	_ck_file /dev/net/tun "the kernel's tun driver" "QEMU taps"
	if _ck_cmd qemu-system-x86_64 qemu-system-x86 "QEMU"; then
		qemu-system-x86_64 -device help >"$_ck_tmp/qdev" 2>&1
		for _d in virtio-9p-pci e1000e virtio-net-pci virtio-rng-pci pcie-root-port; do
			grep -q "\"$_d\"" "$_ck_tmp/qdev" ||
				_ck_fail "QEMU" "no device $_d (package qemu-system-x86)"
		done
		qemu-system-x86_64 -accel help 2>/dev/null | grep -qx tcg ||
			_ck_fail "QEMU" "no TCG accelerator (package qemu-system-x86)"
	fi
}

# smtpgw_check_tools LAYER...: check, for each layer, that every tool it
# relies on is there and can do what the tests ask.  Layers: build asan
# fuzz cli e2e bench appliance.  One line on stderr per missing feature; returns
# 1 if anything is missing.
smtpgw_check_tools() {
	_ck_bad=0
	_ck_tmp=$(mktemp -d "${TMPDIR:-/tmp}/smtpgw-check.XXXXXX") || return 1
	for _layer in "$@"; do
		case $_layer in
		build) _ck_build ;;
		asan) _ck_asan ;;
		fuzz) _ck_fuzz ;;
		cli) _ck_cli ;;
		e2e) _ck_e2e ;;
		bench) _ck_e2e; _ck_bench ;;
		appliance) _ck_appliance ;;
		*) echo "smtpgw_check_tools: unknown layer $_layer" >&2; _ck_bad=$((_ck_bad + 1)) ;;
		esac
	done 2>"$_ck_tmp/out"
	# The same reason from two layers once.
	awk '!seen[$0]++' "$_ck_tmp/out" >&2
	_ck_n=$(awk '!seen[$0]++' "$_ck_tmp/out" | grep -c '^missing: ')
	rm -rf -- "$_ck_tmp"
	[ "$_ck_bad" -eq 0 ] && return 0
	echo "$_ck_n missing feature(s): install what is named above (scripts/deps.sh lists every package)" >&2
	return 1
}
