# The smtpgw appliance: firmware image for a board (board/).  The daemon
# itself builds with meson (README.md); this file only strings the image
# steps together.
#
#   make image [BOARD=qemu-x86_64] [O=out/BOARD] [SSH_KEYS=FILE]
#       daemon (release, baseline x86-64) + kernel + initramfs + GPT disk
#       image O/smtpgw.img, ready to flash (README.md, "The appliance")
#   make initramfs   kernel and initramfs only (what the QEMU testbed boots)
#   make daemon      the release build of smtpgw for the image
#   make clean-image remove O
#
# PIN=FILE rebuilds the package versions of an earlier image's manifest
# (its "package" and "kernel" lines).  The initramfs is rebuilt when one
# of its sources changed; FORCE=1 rebuilds it anyway (new Debian updates).

BOARD ?= qemu-x86_64
O ?= out/$(BOARD)
DAEMON_BUILD ?= out/build-release
SSH_KEYS ?=
PIN ?=

SOURCES := $(shell find initramfs board/$(BOARD) -type f) \
	scripts/smtpgwctl nftables/smtpgw-nft nftables/smtpgw.nft.in

.PHONY: image initramfs daemon clean-image FORCE

image: initramfs
	image/mkimage -i $(O) $(if $(SSH_KEYS),-k $(SSH_KEYS))

initramfs: daemon
	@$(MAKE) --no-print-directory $(O)/initrd.img

$(O)/initrd.img: $(SOURCES) $(DAEMON_BUILD)/daemon/smtpgw $(if $(FORCE),FORCE)
	initramfs/mkinitramfs -b $(BOARD) -o $(O) -d $(DAEMON_BUILD) $(if $(PIN),-p $(PIN))

# Release build for the image: generic x86-64 code (QEMU TCG and every
# x86-64 box run it), never -march=native; no unit tests.
daemon:
	@if [ ! -f $(DAEMON_BUILD)/build.ninja ]; then \
		meson setup $(DAEMON_BUILD) --buildtype=release -Dtests=disabled >/dev/null; fi
	@ninja -C $(DAEMON_BUILD) >/dev/null

clean-image:
	rm -rf $(O)

FORCE:
