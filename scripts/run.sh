#!/usr/bin/env bash
# The nkbridge run command (see README): builds ./cmd/nkbridge and runs it with this script's
# arguments (scripts/run.sh -check-config, scripts/run.sh -config my.yaml, ...).
#
# The Opus transcoder is cgo code linked against libopus. On a machine with only Go, this
# script first installs what the build needs with apt-get (as root, or through sudo): a C
# compiler if there is none, libopus-dev and pkg-config. Elsewhere install libopus and
# pkg-config yourself (e.g. brew install opus pkg-config).
#
# The binary is built into a per-checkout cache directory and exec'd, so signals (SIGINT stops,
# SIGTERM drains) reach nkbridge itself, not a go run wrapper.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

need=()
cc=$(go env CC)
if ! command -v "${cc%% *}" >/dev/null; then
	need+=(gcc libc6-dev)
fi
if ! command -v pkg-config >/dev/null || ! pkg-config --exists opus; then
	need+=(libopus-dev pkg-config)
fi
if ((${#need[@]})); then
	if ! command -v apt-get >/dev/null; then
		echo "scripts/run.sh: the build needs a C compiler, pkg-config and libopus (missing: ${need[*]}); install them and run again" >&2
		exit 1
	fi
	SUDO=()
	if ((EUID != 0)); then
		if ! command -v sudo >/dev/null; then
			echo "scripts/run.sh: need root (or sudo) to install ${need[*]}" >&2
			exit 1
		fi
		SUDO=(sudo)
	fi
	echo "scripts/run.sh: installing ${need[*]}" >&2
	export DEBIAN_FRONTEND=noninteractive
	"${SUDO[@]}" apt-get update -q >&2
	"${SUDO[@]}" apt-get install -y -q --no-install-recommends "${need[@]}" >&2
	if ! pkg-config --exists opus; then
		echo "scripts/run.sh: installed ${need[*]} but pkg-config still does not find opus" >&2
		exit 1
	fi
fi

cache=${XDG_CACHE_HOME:-${HOME:-/tmp}/.cache}
bin="$cache/nkbridge/run-$(printf '%s' "$ROOT" | cksum | cut -d' ' -f1)/nkbridge"
mkdir -p "$(dirname "$bin")"
CGO_ENABLED=1 go -C "$ROOT" build -o "$bin" ./cmd/nkbridge
exec "$bin" "$@"
