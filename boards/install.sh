#!/usr/bin/env bash
# Copy the arm64 package to a board over ssh, install it, and start the service.
#
#   boards/install.sh user@board [path/to/ign-edge_*_arm64.deb]
#
# Build the package first: boards/cross-build.sh rpi5 && cargo deb --no-build --target aarch64-unknown-linux-gnu
# (cargo install cargo-deb). Then edit /etc/ign-edge/config.toml on the board if needed and
# `sudo systemctl restart ign-edge`; `journalctl -u ign-edge -f` shows the loop's summary lines.
set -euo pipefail
host=${1:?usage: boards/install.sh user@board [package.deb]}
deb=${2:-$(ls -t target/aarch64-unknown-linux-gnu/debian/ign-edge_*_arm64.deb 2>/dev/null | head -1)}
[ -n "$deb" ] && [ -f "$deb" ] || { echo "no .deb found: build it first (see the header of this script)" >&2; exit 2; }
# A fresh private folder on the board (mktemp -d, mode 0700): another user there cannot swap
# the package between the copy and the install.
dir=$(ssh "$host" 'mktemp -d /tmp/ign-edge-install.XXXXXXXX')
[ -n "$dir" ] || { echo "$host: cannot make a temporary folder" >&2; exit 2; }
name=$(basename "$deb")
scp "$deb" "$host:$dir/$name"
ssh -t "$host" "sudo apt-get install -y '$dir/$name' && sudo systemctl enable --now ign-edge && systemctl --no-pager status ign-edge | head -5; rm -rf '$dir'"
