#!/usr/bin/env bash
# Build ign-edge for an ARM board without a container engine (what `cross` does, with the
# Debian cross toolchain), and optionally run the test suite under qemu-user.
#
#   boards/cross-build.sh [BOARD] [--test] [--deb]
#
# BOARD: rpi4, rpi5 or rk3588 (default rpi5): its board.toml gives the target CPU and features;
# generic: any arm64 board (no CPU tuning, the NPU backend included), what the .deb ships.
# Installs what is missing: the rustup target, gcc-aarch64-linux-gnu, qemu-user for --test,
# cargo-deb for --deb. The binary lands in target/aarch64-unknown-linux-gnu/release/ign-edge,
# the package (--deb) in target/aarch64-unknown-linux-gnu/debian/.
set -euo pipefail
cd "$(dirname "$0")/.."

board=rpi5
run_tests=0
make_deb=0
for a in "$@"; do
  case "$a" in
    --test) run_tests=1 ;;
    --deb) make_deb=1 ;;
    rpi4|rpi5|rk3588|generic) board="$a" ;;
    *) echo "usage: boards/cross-build.sh [rpi4|rpi5|rk3588|generic] [--test] [--deb]" >&2; exit 2 ;;
  esac
done
target=aarch64-unknown-linux-gnu
if [ "$board" = generic ]; then
  cpu=""
  features=rknn
else
  cpu=$(sed -n 's/.*target-cpu=\([a-z0-9-]*\).*/\1/p' "boards/$board/board.toml" | head -1)
  # the profile's cargo features (e.g. rk3588: rknn, the NPU backend), comma-separated
  features=$(sed -n 's/^features *= *\[\(.*\)\].*/\1/p' "boards/$board/board.toml" | tr -d ' "')
fi

need_apt=()
command -v aarch64-linux-gnu-gcc >/dev/null || need_apt+=(gcc-aarch64-linux-gnu libc6-dev-arm64-cross)
if [ "$run_tests" = 1 ]; then
  command -v qemu-aarch64 >/dev/null || need_apt+=(qemu-user)
fi
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "== installing ${need_apt[*]}"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_apt[@]}"
fi
rustup target list --installed | grep -qx "$target" || rustup target add "$target"

export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
if [ -n "$cpu" ]; then
  export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUSTFLAGS="-C target-cpu=$cpu"
fi
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="qemu-aarch64 -L /usr/aarch64-linux-gnu"

echo "== cargo build --release --target $target (board $board, target-cpu ${cpu:-generic}, features: ${features:-none})"
cargo build --release --locked --target "$target" -p ign-edge ${features:+--features "$features"}
ls -l "target/$target/release/ign-edge"

if [ "$run_tests" = 1 ]; then
  # qemu-user reports the host's /proc/cpuinfo, so tract takes its generic aarch64 paths;
  # numbers are checked, timings are meaningless here.
  echo "== cargo test --target $target (under qemu-user)"
  cargo test --locked --target "$target" -p ign-edge ${features:+--features "$features"}
fi

if [ "$make_deb" = 1 ]; then
  command -v cargo-deb >/dev/null || { echo "== cargo install cargo-deb"; cargo install cargo-deb --locked --quiet; }
  echo "== cargo deb --target $target"
  cargo deb --no-build --target "$target" -p ign-edge
fi
