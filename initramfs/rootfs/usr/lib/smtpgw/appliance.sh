# shellcheck shell=sh
# NAME
#	appliance.sh - functions of the smtpgw appliance's boot scripts
# DESCRIPTION
#	Sourced by /etc/init.d/rcS and friends (busybox sh).  The network
#	settings live in /etc/smtpgw/network, one setting a line:
#
#	  hostname NAME
#	  addr IFACE ADDRESS/LEN [nodad]   static address (v4 or v6)
#	  dhcp IFACE                       DHCPv4 client (udhcpc)
#	  route DEST via GATEWAY           static route (v6 when it has a ":")
#	  forward yes|no                   route between the interfaces
#	  ssh IFACE...                     interfaces the SSH server answers on
#	                                   (default: mgmt0 and the board's
#	                                   trusted ports)
#	  ntp SERVER                       time server (repeatable)
#	  dns SERVER                       resolver (repeatable)
#	  carrier-wait SECONDS             wait for link carrier (default 10)
#	  log-rotate KIB KEEP              rotate each log in /var/log at KIB
#	                                   KiB, keep KEEP old ones (default
#	                                   1024 4)

log() {
	echo "rc: $*" >/dev/console
	echo "rc: $*" >>/run/boot.log
	logger -t smtpgw-rc -- "$*" 2>/dev/null || true
}

# milliseconds since boot, without a fork
uptime_ms() {
	read -r _u _ </proc/uptime
	_s=${_u%.*} _f=${_u#*.}
	echo $(( _s * 1000 + ${_f#0} * 10 ))
}

# net_get KEY: the arguments of every KEY line of the network settings
net_get() {
	awk -v k="$1" '
		{ sub(/#.*/, "") }
		$1 == k { $1 = ""; sub(/^ +/, ""); print }' /etc/smtpgw/network
}

# The board's ports (names from /usr/share/smtpgw/nics that exist).
board_ifaces() {
	awk '$1 !~ /^#/ && NF >= 3 { print $1 }' /usr/share/smtpgw/nics | while read -r i; do
		[ -e "/sys/class/net/$i" ] && echo "$i"
	done
}

net_up() {
	h=$(net_get hostname | head -n 1)
	hostname "${h:-smtpgw}"
	printf '127.0.0.1\tlocalhost\n::1\tlocalhost\n127.0.1.1\t%s\n' "${h:-smtpgw}" >/etc/hosts

	for i in $(board_ifaces); do
		ip link set "$i" up
	done

	# Bounded wait for carrier on every port that has an address or DHCP.
	wait_s=$(net_get carrier-wait | head -n 1)
	want=$( { net_get addr; net_get dhcp; } | awk '{ print $1 }' | sort -u)
	t0=$(uptime_ms)
	while :; do
		down=''
		for i in $want; do
			c=0
			read -r c <"/sys/class/net/$i/carrier" 2>/dev/null
			[ "$c" = 1 ] || down="$down $i"
		done
		[ -z "$down" ] && break
		[ $(( $(uptime_ms) - t0 )) -lt $(( ${wait_s:-10} * 1000 )) ] || break
		sleep 0.1
	done
	if [ -n "$down" ]; then
		log "no carrier after ${wait_s:-10} s on:$down"
	else
		# shellcheck disable=SC2086 # the interfaces are words
		log "carrier on:$(printf ' %s' $want) after $(( $(uptime_ms) - t0 )) ms"
	fi

	net_get addr | while read -r i a flags; do
		# shellcheck disable=SC2086 # flags are words
		ip addr add "$a" dev "$i" $flags || log "cannot add $a to $i"
	done
	net_get dhcp | while read -r i; do
		udhcpc -b -S -i "$i" -s /usr/share/udhcpc/default.script -p "/run/udhcpc.$i.pid" \
			>/dev/null 2>&1 || log "DHCP client on $i failed to start"
	done
	net_get route | while read -r dest _via gw rest; do
		fam=-4
		case "$dest$gw" in *:*) fam=-6 ;; esac
		# shellcheck disable=SC2086
		ip $fam route add "$dest" via "$gw" $rest || log "cannot add route $dest via $gw"
	done
	: >/etc/resolv.conf
	for d in $(net_get dns); do
		echo "nameserver $d" >>/etc/resolv.conf
	done
}

net_forward() {
	case $(net_get forward | head -n 1) in
	no) sysctl -q -w net.ipv4.ip_forward=0 net.ipv6.conf.all.forwarding=0 ;;
	*) sysctl -q -w net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1 ;;
	esac
}

# SSH only from the management interfaces: the appliance's own table,
# separate from smtpgw's (smtpgw-nft replaces only table inet smtpgw).
appliance_filter() {
	ssh_if=$(net_get ssh | tr ' ' '\n' | grep -v '^$')
	if [ -z "$ssh_if" ]; then
		ssh_if=$( { [ -e /sys/class/net/mgmt0 ] && echo mgmt0
			awk '$2 == "trusted" { print $1 }' /usr/share/smtpgw/board; } )
	fi
	# shellcheck disable=SC2086 # the interfaces are words
	set_elems=$(printf '"%s", ' lo $ssh_if | sed 's/, $//')
	nft -f - <<EOF || log "cannot load the appliance's input filter"
table inet appliance
delete table inet appliance
table inet appliance {
	chain input {
		type filter hook input priority filter; policy accept;
		# The management SSH server answers only on these interfaces.
		tcp dport 22 iifname != { $set_elems } reject with tcp reset
	}
}
EOF
	echo "$ssh_if" | tr '\n' ' ' >/run/ssh-interfaces
}

ntp_start() {
	servers=$(net_get ntp)
	[ -n "$servers" ] || { log "no time server (ntp in /etc/smtpgw/network)"; return 0; }
	mkdir -p /etc/openntpd /var/lib/openntpd/db /var/lib/openntpd/run
	for s in $servers; do echo "servers $s"; done >/etc/openntpd/ntpd.conf
	if ntpd -f /etc/openntpd/ntpd.conf >/dev/null 2>&1; then
		# shellcheck disable=SC2086 # the servers are words
		log "time sync: openntpd with$(printf ' %s' $servers)"
	else
		log "openntpd did not start"
	fi
}

# ------------------------------------------------------------ logs

# /var/log is RAM, and how much is logged is up to whoever talks to the
# gateway: every log there is rotated by size (logrotate), and /var/log is
# a tmpfs of its own with a size cap, so that even a log written past its
# rotation cannot take the box's memory.  syslog (smtpgw's log with the
# default "log = syslog") goes to /var/log/messages, smtpgw's stderr to
# /var/log/smtpgw.log (run-syslog, smtpgw-supervise).  The testbed's logs
# on its host share are not rotated: they are on the host's disk.
log_setup() {
	# shellcheck disable=SC2046 # KIB KEEP are words
	set -- $(net_get log-rotate | head -n 1)
	kib=${1:-1024} keep=${2:-4}
	case $kib:$keep in
	*[!0-9:]* | :* | *: | 0*:* | *:0?*) log "log-rotate \"$*\" is not KIB KEEP: using 1024 4"; kib=1024 keep=4 ;;
	esac
	if [ "$kib" -lt 16 ] || [ "$kib" -gt 1048576 ] || [ "$keep" -gt 20 ]; then
		log "log-rotate $kib $keep is out of range (KIB 16..1048576, KEEP 0..20): using 1024 4"
		kib=1024 keep=4
	fi
	# two rotated logs (messages, smtpgw.log), nft.log and slack
	cap=$(( 2 * (keep + 1) * kib + 2048 ))
	mkdir -p /var/log
	mount -t tmpfs -o "size=${cap}k,mode=0755,nosuid,nodev,noexec" tmpfs /var/log ||
		log "cannot mount /var/log (its size is not capped)"
	printf 'SMTPGW_LOG_KIB=%s\nSMTPGW_LOG_KEEP=%s\n' "$kib" "$keep" >>/run/appliance.env
	/usr/lib/smtpgw/run-syslog </dev/null >/dev/null 2>&1 &
	log "logs: /var/log (tmpfs, at most ${cap} KiB), each rotated at $kib KiB, $keep kept"
}

# ------------------------------------------------------------ the gateway

# gateway_ruleset: load what decides the fate of SMTP through the box, and
# say in GATEWAY_STATE what was loaded:
#   on          the interception ruleset of a configuration smtpgw accepts
#   fail-closed no usable configuration (missing, unreadable, refused by
#               smtpgw -t) or its ruleset does not load: every forwarded
#               SMTP connection is reset (failclosed.nft), other traffic
#               is routed, smtpgw starts once a valid configuration is
#               applied (smtpgwctl import/init, then apply)
#   broken      not even the fail-closed ruleset loads (no nftables in the
#               kernel?): nothing may be forwarded at all
# Forwarding is switched on (net_forward) only after this, and never when
# broken: the one thing an admin must be able to count on is that mail
# never crosses the box uninspected; a box that cannot filter SMTP routes
# nothing, which is noticed at once, where SMTP passing unseen is not.
# shellcheck disable=SC2034 # GATEWAY_STATE is rcS's
gateway_ruleset() {
	conf=/etc/smtpgw/smtpgw.conf
	why=''
	if [ ! -e "$conf" ]; then
		why="there is no configuration ($conf)"
	elif [ ! -f "$conf" ] || [ ! -r "$conf" ]; then
		why="$conf is not a readable file"
	elif ! smtpgw -t -c "$conf" >/run/smtpgw-check.log 2>&1; then
		why="smtpgw refuses $conf: $(grep -v ': warning: ' /run/smtpgw-check.log | head -n 3 | tr '\n' ' ')"
	elif ! smtpgw-nft -c "$conf" load >>"$SMTPGW_NFT_LOG" 2>&1; then
		why="its ruleset did not load (smtpgw-nft load: $SMTPGW_NFT_LOG)"
	fi
	if [ -z "$why" ]; then
		GATEWAY_STATE=on
		log "interception ruleset loaded"
		return 0
	fi
	log "ERROR: the gateway cannot run: $why"
	if nft -f /usr/share/smtpgw/failclosed.nft >>"$SMTPGW_NFT_LOG" 2>&1; then
		GATEWAY_STATE=fail-closed
		log "FAIL-CLOSED: every SMTP connection through the box is reset until a valid configuration is applied (smtpgwctl import FILE, or smtpgwctl init --force; then smtpgwctl apply)"
	else
		GATEWAY_STATE=broken
		log "ERROR: not even the fail-closed ruleset loads ($SMTPGW_NFT_LOG): forwarding stays off"
	fi
}
