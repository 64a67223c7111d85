# The smtpgw appliance: firmware image for a board (board/).  The daemon
# itself builds with meson (README.md); this file only strings the image
# steps together.
#
#   make image [BOARD=qemu-x86_64] [O=out/BOARD] [SSH_KEYS=FILE]
#       daemon (release, baseline x86-64) + kernel + initramfs + GPT disk
#       image O/smtpgw.img, ready to flash (README.md, "The appliance")
#   make initramfs   kernel and initramfs only (what the QEMU testbed boots)
#   make daemon      the release build of smtpgw for the image, installed
#                    (meson install --destdir) into DAEMON_DEST: what the
#                    initramfs takes (daemon, smtpgwctl, smtpgw-nft, the
#                    ruleset template)
#   make clean-image remove O
#
# CLAMAV=yes|no puts clamd and freshclam on the box or not (default: the
# board's, board/BOARD/board.conf: yes for intel-4port); changing it for a
# built image needs FORCE=1.
#
# PIN=FILE rebuilds the package versions of an earlier image's manifest
# (its "package" and "kernel" lines).  The initramfs is rebuilt when one
# of its sources changed; FORCE=1 rebuilds it anyway (new Debian updates).

BOARD ?= qemu-x86_64
O ?= out/$(BOARD)
DAEMON_BUILD ?= out/build-release
DAEMON_DEST ?= $(DAEMON_BUILD)/destdir
SSH_KEYS ?=
PIN ?=
CLAMAV ?=

# The install tree is listed when the recursive make below parses this
# file, i.e. after "daemon" has (re)installed it.
SOURCES := $(shell find initramfs board/$(BOARD) -type f)
INSTALLED := $(shell [ -d $(DAEMON_DEST) ] && find $(DAEMON_DEST) -type f)

.PHONY: image initramfs daemon clean-image FORCE

image: initramfs
	image/mkimage -i $(O) $(if $(SSH_KEYS),-k $(SSH_KEYS))

initramfs: daemon
	@$(MAKE) --no-print-directory $(O)/initrd.img

$(O)/initrd.img: $(SOURCES) $(INSTALLED) $(DAEMON_DEST)/usr/sbin/smtpgw $(if $(FORCE),FORCE)
	CLAMAV=$(CLAMAV) initramfs/mkinitramfs -b $(BOARD) -o $(O) -i $(DAEMON_DEST) $(if $(PIN),-p $(PIN))

# Release build for the image: generic x86-64 code (QEMU TCG and every
# x86-64 box run it), never -march=native; no unit tests, no bench tools;
# prefix /usr.  An existing build directory is brought to these options
# (one made before the install tree was used has prefix /usr/local).  The
# install tree is made afresh (nothing stale in it); meson install keeps
# the files' times, so an unchanged tree does not rebuild the initramfs.
DAEMON_OPTS = -Dprefix=/usr -Dtests=disabled -Dbench=false

daemon:
	@if [ ! -f $(DAEMON_BUILD)/build.ninja ]; then \
		meson setup $(DAEMON_BUILD) --buildtype=release $(DAEMON_OPTS) >/dev/null; \
	else \
		meson configure $(DAEMON_BUILD) $(DAEMON_OPTS) >/dev/null; fi
	@ninja -C $(DAEMON_BUILD) >/dev/null
	@rm -rf $(DAEMON_DEST)
	@meson install -C $(DAEMON_BUILD) --destdir $(abspath $(DAEMON_DEST)) --no-rebuild --quiet
	@[ -x $(DAEMON_DEST)/usr/sbin/smtpgw ] || \
		{ echo "$(DAEMON_DEST): no usr/sbin/smtpgw (a build of prefix /usr?)" >&2; exit 1; }

clean-image:
	rm -rf $(O)

FORCE:
