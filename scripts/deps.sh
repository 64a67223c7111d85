# shellcheck shell=sh
# deps.sh - the one list of Debian packages smtpgw needs to build and test.
#
# Source it, then call smtpgw_install_deps (needs root when something is
# missing; does nothing, not even apt-get update, when all is installed).
# POSIX sh, so scripts in any shell can source it.

SMTPGW_DEPS="meson ninja-build pkg-config gcc libssl-dev libmnl-dev
libnetfilter-queue-dev libcmocka-dev libcap-dev libnftables-dev libjson-c-dev
libpcre2-dev libmagic-dev libarchive-dev nftables iptables iproute2
swaks openssl postfix python3-pytest python3-aiosmtpd clang libclang-rt-14-dev
libopendkim-dev clamav-daemon rspamd
busybox-static testssl.sh
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
