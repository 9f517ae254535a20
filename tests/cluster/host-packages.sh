#!/usr/bin/env bash
# Installs the Debian packages the image build and the real node need, when missing.
# Debian 12's versions serve (see README.md "The real node"): no source builds.
#
#   image:     buildah (daemonless builds from the Dockerfile), mmdebstrap (the base
#              image from Debian packages), skopeo (OCI archive handling)
#   real node: containerd 1.6 + runc, containernetworking-plugins (bridge, host-local,
#              loopback, portmap), catatonit (the pause image), iptables + conntrack
#              (kube-proxy), iproute2 (netns, veth)
#   promtool:  prometheus (2.42; only its /usr/bin/promtool is used: `promtool check rules`
#              and `promtool test rules` on the chart's alerting rules)
#
# Usage: host-packages.sh image|node|promtool|all
set -euo pipefail

IMAGE_PKGS=(buildah mmdebstrap skopeo uidmap)
NODE_PKGS=(containerd runc containernetworking-plugins catatonit iptables conntrack iproute2 ethtool socat)
PROMTOOL_PKGS=(prometheus)

case "${1:-all}" in
    image) want=("${IMAGE_PKGS[@]}") ;;
    node) want=("${NODE_PKGS[@]}") ;;
    promtool) want=("${PROMTOOL_PKGS[@]}") ;;
    all) want=("${IMAGE_PKGS[@]}" "${NODE_PKGS[@]}" "${PROMTOOL_PKGS[@]}") ;;
    *) echo "usage: $0 image|node|promtool|all" >&2; exit 2 ;;
esac

missing=()
for p in "${want[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
[ "$(id -u)" = 0 ] || { echo "need root to apt-get install: ${missing[*]}" >&2; exit 1; }
echo "[host-packages] installing Debian packages: ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
# The package lists may be missing or stale on a fresh machine.
apt-get update -qq
# Debian's containerd.service would start a second containerd on /run/containerd, and
# prometheus.service a Prometheus on :9090: policy-rc.d keeps services from starting at
# install time; the harness runs its own.
if [ ! -e /usr/sbin/policy-rc.d ]; then
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
fi
apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
