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
		log "time sync: openntpd with$(printf ' %s' $servers)"
	else
		log "openntpd did not start"
	fi
}
