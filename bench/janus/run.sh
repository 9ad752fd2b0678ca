#!/bin/sh
# Side-by-side rooms benchmark: nkbridge (real binary, loopback) vs Janus VideoRoom/AudioBridge
# (Debian janus, in a private network namespace reached over a veth pair). Run as root from the
# repository root or anywhere:  sudo bench/janus/run.sh
# Env: NKB_JANUS_LISTENERS (default "10,40,100"), NKB_JANUS_MIXER (default "5,10,20"),
#      NKB_JANUS_WINDOW (measurement window, default 10s), NKB_JANUS_VIDEO=1 (SFU publisher
#      also sends VP8, 50 packets/s of 900 bytes). "none" skips the SFU or mixer part.
set -eu
[ "$(id -u)" = 0 ] || { echo "run.sh: must run as root (apt-get, ip netns)" >&2; exit 1; }
cd "$(dirname "$0")/../.."
if ! command -v janus >/dev/null 2>&1; then
	apt-get update && apt-get install -y --no-install-recommends janus
fi
BIN=$(mktemp -d)
NS=nkbjanus
HOSTIF=nkv0
NSIF=nkv1
cleanup() {
	for p in $(ip netns pids "$NS" 2>/dev/null); do kill "$p" 2>/dev/null || true; done
	sleep 0.5
	for p in $(ip netns pids "$NS" 2>/dev/null); do kill -9 "$p" 2>/dev/null || true; done
	ip link del "$HOSTIF" 2>/dev/null || true
	ip netns del "$NS" 2>/dev/null || true
}
finish() { cleanup; rm -rf "$BIN"; }
trap finish EXIT
trap 'exit 130' INT TERM
cleanup
# Build first (module downloads, if any, happen outside the measured part).
go test -tags janusbench -c -o $BIN/janusbench.test ./bench/janus
go build -o $BIN/nkbridge ./cmd/nkbridge
ip netns add "$NS"
ip link add "$HOSTIF" type veth peer name "$NSIF"
# No IPv6 on either end: no link-local addresses, no multicast (MLD, router solicitations).
sysctl -qw "net.ipv6.conf.$HOSTIF.disable_ipv6=1" 2>/dev/null || true
ip link set "$NSIF" netns "$NS"
ip netns exec "$NS" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 2>/dev/null || true
ip netns exec "$NS" sysctl -qw "net.ipv6.conf.$NSIF.disable_ipv6=1" 2>/dev/null || true
ip addr add 10.77.0.1/30 dev "$HOSTIF"
ip link set "$HOSTIF" up
ip netns exec "$NS" ip addr add 10.77.0.2/30 dev "$NSIF"
ip netns exec "$NS" ip link set "$NSIF" up
ip netns exec "$NS" ip link set lo up
NKB_JANUS_NETNS=$NS NKB_JANUS_IP=10.77.0.2 NKB_JANUS_CLIENT_IP=10.77.0.1 NKB_JANUS_IFACE=$NSIF NKB_JANUS_NKBRIDGE=$BIN/nkbridge \
	$BIN/janusbench.test -test.run XXX -test.bench . -test.benchtime 1x -test.timeout 15m -test.v "$@"
