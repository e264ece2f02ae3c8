#!/usr/bin/env bash
# An emulated arm64 board: boots Debian's arm64 kernel in qemu-system-aarch64 with the vivid
# virtual camera (/dev/video0) and a virtio-gpu framebuffer (/dev/fb0), runs
#
#   ign-edge run --source v4l2:/dev/video0 --sink fb:/dev/fb0 --frames N
#
# in an initramfs (then 10 frames on the KMS sink, --sink drm), and brings back what it did: the run's console log (with its summary line)
# and the framebuffer's bytes, written by the guest to a second virtio disk.
#
#   boards/qemu-virt/run.sh BINARY [FRAMES]
#
# BINARY: an aarch64 ign-edge (dynamically linked against glibc: the cross toolchain's loader
# and libraries go into the initramfs). Outputs under target/qemu-virt/: console.log, fb.raw,
# fb.txt (the framebuffer's geometry as the guest saw it). The arm64 packages (kernel with its
# modules, busybox-static) come from Debian through a private apt configuration, without
# touching this machine's dpkg state, and are cached under target/qemu-virt/.
set -euo pipefail
cd "$(dirname "$0")/../.."

bin=${1:?usage: boards/qemu-virt/run.sh BINARY [FRAMES]}
frames=${2:-30}
work=target/qemu-virt
mkdir -p "$work"
work=$(cd "$work" && pwd)

need=()
command -v qemu-system-aarch64 >/dev/null || need+=(qemu-system-arm)
command -v cpio >/dev/null || need+=(cpio)
command -v xz >/dev/null || need+=(xz-utils)
[ -e /usr/aarch64-linux-gnu/lib/ld-linux-aarch64.so.1 ] || need+=(libc6-arm64-cross)
if [ ${#need[@]} -gt 0 ]; then
  echo "== installing ${need[*]}"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# --- arm64 packages through a private apt configuration --------------------------------
apt_dir=$work/apt
if [ ! -f "$work/pkgs.done" ]; then
  echo "== fetching the arm64 kernel and busybox-static (private apt configuration)"
  mkdir -p "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial" "$apt_dir/debs"
  : > "$apt_dir/status"
  suite=$(. /etc/os-release && echo "${VERSION_CODENAME:-bookworm}")
  cat > "$apt_dir/apt.conf" <<EOF
APT::Architecture "arm64";
APT::Architectures { "arm64"; };
Dir::State "$apt_dir";
Dir::State::Lists "$apt_dir/lists";
Dir::State::status "$apt_dir/status";
Dir::Cache "$apt_dir/cache";
Dir::Etc::SourceList "$apt_dir/sources.list";
Dir::Etc::SourceParts "/nonexistent";
Acquire::Languages "none";
EOF
  echo "deb [arch=arm64] http://deb.debian.org/debian $suite main" > "$apt_dir/sources.list"
  apt-get -c "$apt_dir/apt.conf" update -qq
  # the versioned kernel package the metapackage points at
  kpkg=$(apt-cache -c "$apt_dir/apt.conf" depends linux-image-arm64 | sed -n 's/.*Depends: \(linux-image-[0-9].*-arm64\)$/\1/p' | head -1)
  [ -n "$kpkg" ] || { echo "no arm64 kernel package found" >&2; exit 1; }
  (cd "$apt_dir/debs" && apt-get -c "$apt_dir/apt.conf" download "$kpkg" busybox-static >/dev/null)
  rm -rf "$work/pkgroot" && mkdir -p "$work/pkgroot"
  for d in "$apt_dir"/debs/*.deb; do dpkg -x "$d" "$work/pkgroot"; done
  touch "$work/pkgs.done"
fi
kernel=$(ls "$work"/pkgroot/boot/vmlinuz-*-arm64 | head -1)
kver=${kernel##*/vmlinuz-}
moddir=$work/pkgroot/lib/modules/$kver

# --- the initramfs ------------------------------------------------------------------------
root=$work/initramfs
rm -rf "$root"
mkdir -p "$root"/{bin,sbin,dev,proc,sys,tmp,lib/aarch64-linux-gnu,lib/modules,etc}
cp "$work/pkgroot/bin/busybox" "$root/bin/busybox"
for a in sh mount insmod sleep cat echo ls dd poweroff grep sync head; do ln -sf busybox "$root/bin/$a"; done
cp "$bin" "$root/bin/ign-edge"
# the dynamic loader and the C libraries the binary links against
cp /usr/aarch64-linux-gnu/lib/ld-linux-aarch64.so.1 "$root/lib/"
for l in libc.so.6 libm.so.6 libgcc_s.so.1 libpthread.so.0 libdl.so.2 librt.so.1; do
  [ -e "/usr/aarch64-linux-gnu/lib/$l" ] && cp -L "/usr/aarch64-linux-gnu/lib/$l" "$root/lib/aarch64-linux-gnu/"
done
mods="mc videodev videobuf2-common videobuf2-v4l2 videobuf2-memops videobuf2-vmalloc
videobuf2-dma-contig v4l2-tpg v4l2-dv-timings rc-core cec vivid virtio_pci_modern_dev
virtio_pci_legacy_dev virtio_pci virtio_blk drm drm_kms_helper drm_shmem_helper virtio_dma_buf
virtio-gpu"
order=""
for m in $mods; do
  alt=${m//-/_}
  f=$(find "$moddir" \( -name "$m.ko*" -o -name "$alt.ko*" \) | head -1)
  if [ -z "$f" ]; then continue; fi  # built into this kernel
  case "$f" in
    *.xz) xz -dc "$f" > "$root/lib/modules/$m.ko" ;;
    *.zst) zstd -qdc "$f" > "$root/lib/modules/$m.ko" ;;
    *) cp "$f" "$root/lib/modules/$m.ko" ;;
  esac
  order="$order $m"
done
cat > "$root/init" <<EOF
#!/bin/sh
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for m in $order; do insmod /lib/modules/\$m.ko 2>/dev/null; done
for i in 1 2 3 4 5 6 7 8 9 10; do [ -e /dev/video0 ] && [ -e /dev/fb0 ] && break; sleep 1; done
echo "IGN-BOARD: devices: \$(ls /dev/video0 /dev/fb0 /dev/vda 2>&1 | tr '\n' ' ')"
echo "IGN-BOARD: fb \$(cat /sys/class/graphics/fb0/virtual_size 2>/dev/null) \$(cat /sys/class/graphics/fb0/bits_per_pixel 2>/dev/null) \$(cat /sys/class/graphics/fb0/stride 2>/dev/null)"
cd /tmp
/bin/ign-edge run --source v4l2:/dev/video0 --sink fb:/dev/fb0 --frames $frames --json /tmp/summary.json
echo "IGN-BOARD: exit \$?"
cat /tmp/summary.json 2>/dev/null | grep -E '"frames"|"fps"' | sed 's/^/IGN-BOARD: summary /'
dd if=/dev/fb0 of=/dev/vda bs=1M 2>/dev/null
sync
# the same loop on the KMS sink (a dumb buffer on virtio-gpu's CRTC), as on boards without fbdev
/bin/ign-edge run --source v4l2:/dev/video0 --sink drm --frames 10
echo "IGN-BOARD: drm exit \$?"
echo "IGN-BOARD: done"
poweroff -f
EOF
chmod +x "$root/init"
(cd "$root" && find . | cpio -o -H newc --quiet | gzip -1 > "$work/initramfs.gz")

# --- boot ---------------------------------------------------------------------------------
rm -f "$work/fb.raw"
truncate -s 8M "$work/fb.raw"
echo "== booting $kver under qemu-system-aarch64 (TCG), ign-edge run for $frames frames"
timeout 600 qemu-system-aarch64 -M virt -cpu max -smp 2 -m 1024 -nographic -no-reboot -nic none \
  -device virtio-gpu-pci,romfile= \
  -drive file="$work/fb.raw",format=raw,if=virtio \
  -kernel "$kernel" -initrd "$work/initramfs.gz" \
  -append "console=ttyAMA0 quiet panic=-1 rdinit=/init" </dev/null | tee "$work/console.log" | grep -E "IGN-BOARD|frames in|error|notice" || true
grep -q "IGN-BOARD: done" "$work/console.log" || { echo "the emulated board did not finish (see $work/console.log)" >&2; exit 1; }
sed -n 's/.*IGN-BOARD: fb \(.*\)/\1/p' "$work/console.log" | tr -d '\r' > "$work/fb.txt"
echo "== outputs: $work/console.log, $work/fb.raw (geometry: $(cat "$work/fb.txt"))"
