#!/usr/bin/env bash
# The reference for `cargo xtask bench image`: the same image built with the
# standard tools a shell script would use, on the same inputs (the cached
# .deb files, the node binary, the bootloader, and the kernel + initramfs
# that `tandem build` made). Partition sizes match examples/minimal.
# PACKAGE_DEBS: the .deb of every package build.json lists, space-separated.
set -euo pipefail
: "${WORK:?}" "${KERNEL_DEB:?}" "${PACKAGE_DEBS:?}" "${INIT_BIN:?}" "${NODE_BIN:?}" "${BOOTLOADER:?}" "${VMLINUZ:?}" "${INITRD:?}" "${MOTD:?}"
export SOURCE_DATE_EPOCH=1700000000
rm -rf "$WORK"; mkdir -p "$WORK"; cd "$WORK"

# /usr tree from the packages
# (merged /usr: /bin, /sbin, /lib* folded in; /etc defaults to the factory)
dpkg-deb -x "$KERNEL_DEB" kernel
mkdir -p usr/lib/modules usr/bin usr/lib/tandem usr/share/tandem usr/share/factory/etc
cp -a kernel/lib/modules/* usr/lib/modules/
for deb in $PACKAGE_DEBS; do
  rm -rf pkg; dpkg-deb -x "$deb" pkg
  for top in pkg/*; do
    name=${top#pkg/}
    case "$name" in
      usr) cp -a pkg/usr/. usr/ ;;
      bin|sbin|lib|lib32|lib64|libx32) mkdir -p "usr/$name"; cp -a "$top/." "usr/$name/" ;;
      etc) cp -a pkg/etc/. usr/share/factory/etc/ ;;
    esac
  done
done
for a in $(usr/bin/busybox --list); do [ -e "usr/bin/$a" ] || ln -s busybox "usr/bin/$a"; done
cp "$INIT_BIN" usr/lib/tandem/tandem-init
cp "$NODE_BIN" usr/lib/tandem/tandem-node
ln -s ../lib/tandem/tandem-node usr/bin/tandemctl
cp "$MOTD" usr/share/tandem/motd
printf 'NAME="Tandem"\nID=tandem\nVERSION_ID=1.0.0\n' > usr/lib/os-release

# /usr file system and verity tree
mkfs.erofs -T"$SOURCE_DATE_EPOCH" --all-root -x-1 --quiet usr.img usr
size=$(stat -c %s usr.img); size=$(( (size + 4095) / 4096 * 4096 )); truncate -s "$size" usr.img
veritysetup format --no-superblock --hash-offset="$size" --data-blocks=$((size / 4096)) usr.img usr.img > verity.txt

# ESP and OEM (FAT), ROOT (ext4)
mkfs.vfat --invariant -F 32 -n EFI-SYSTEM -C esp.img $((256 * 1024)) > /dev/null
mmd -i esp.img ::EFI ::EFI/BOOT ::EFI/tandem
mcopy -i esp.img "$BOOTLOADER" ::EFI/BOOT/BOOTX64.EFI
mcopy -i esp.img "$VMLINUZ" ::EFI/tandem/vmlinuz-a
mcopy -i esp.img "$INITRD" ::EFI/tandem/initrd-a
mkfs.vfat --invariant -n OEM -C oem.img $((64 * 1024)) > /dev/null
mkdir -p rootfs/etc rootfs/var rootfs/usr rootfs/tmp
mke2fs -q -t ext4 -d rootfs -L ROOT root.img 512M

# Disk: GPT, attributes, contents
mib=$((1024 * 1024))
truncate -s $(( (1 + 256 + 1024 + 1024 + 64 + 512 + 1) * mib )) disk.raw
sgdisk \
  -n 1:2048:+256M -t 1:C12A7328-F81F-11D2-BA4B-00A0C93EC93B -c 1:EFI-SYSTEM \
  -n 3:0:+1024M -t 3:5DFBF5F4-2848-4BAC-AA5E-0D9A20B745A6 -c 3:USR-A \
  -n 4:0:+1024M -t 4:5DFBF5F4-2848-4BAC-AA5E-0D9A20B745A6 -c 4:USR-B \
  -n 6:0:+64M -t 6:0FC63DAF-8483-4772-8E79-3D69D8477DE4 -c 6:OEM \
  -n 9:0:+512M -t 9:3884DD41-8582-4404-B9A8-E9B84F2DF50E -c 9:ROOT disk.raw > /dev/null
cgpt add -i 3 -P 1 -S 1 disk.raw
for p in "1 esp.img 1" "3 usr.img 257" "6 oem.img 2305" "9 root.img 2369"; do
  set -- $p
  dd if="$2" of=disk.raw bs=1M seek="$3" conv=notrunc,sparse status=none
done
