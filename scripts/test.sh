#!/usr/bin/env bash
# The nkbridge test command (see README): installs the real peers the tests drive (Debian
# packages, npm packages, the Verto client bundle), then runs go vet, a gofmt check, staticcheck
# and the whole Go test suite with the race detector. Real-peer tests fail instead of skipping here
# (NKB_REQUIRE_PEERS=1). Idempotent: what is already installed is not installed again.
# Exits non-zero if any step fails.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$(pwd)

# Exact versions: bump here and in package.json together.
APT_PACKAGES=(chromium sip-tester baresip-core sox libopus-dev pkg-config prometheus systemd nats-server kamailio)
VERTO_PKG="@signalwire/js@1.5.0"
VERTO_SHA256="5745f21618519245a7cf6fbb59e03edcd0ce4a9e2dad2e7be31d1328929e3cb6"
VENDOR_DIR="$ROOT/.tmp/vendor"
VERTO_JS="$VENDOR_DIR/verto.min.js"

export DEBIAN_FRONTEND=noninteractive
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 # tests use Debian's /usr/bin/chromium
export npm_config_audit=false npm_config_fund=false npm_config_update_notifier=false

T0=$SECONDS
phase() { printf '=== %s (t=%ds)\n' "$1" $((SECONDS - T0)); }

# --- Debian packages -------------------------------------------------------------------
phase "apt packages"
missing=()
for p in "${APT_PACKAGES[@]}"; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
		missing+=("$p")
	fi
done
if ((${#missing[@]})); then
	echo "installing: ${missing[*]}"
	SUDO=()
	if ((EUID != 0)); then
		if command -v sudo >/dev/null; then SUDO=(sudo -n); else
			echo "scripts/test.sh: need root to install ${missing[*]}" >&2
			exit 1
		fi
	fi
	"${SUDO[@]}" apt-get update -q
	"${SUDO[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
else
	echo "all present: ${APT_PACKAGES[*]}"
fi

# --- npm packages (exact versions from package-lock.json; no browser downloads) -------------
phase "npm ci"
npm ci --ignore-scripts --no-audit --no-fund --loglevel=error

# --- the Verto client bundle (its package declares a stray runtime dependency: npm pack only)
phase "verto client"
verto_ok() { [[ -f $VERTO_JS ]] && echo "$VERTO_SHA256  $VERTO_JS" | sha256sum -c --status; }
if ! verto_ok; then
	mkdir -p "$VENDOR_DIR"
	tgz=$(cd "$VENDOR_DIR" && npm pack "$VERTO_PKG" --silent | tail -n1)
	tar -xzf "$VENDOR_DIR/$tgz" -C "$VENDOR_DIR" package/dist/index.min.js
	mv "$VENDOR_DIR/package/dist/index.min.js" "$VERTO_JS"
	rm -rf "$VENDOR_DIR/package" "$VENDOR_DIR/$tgz"
	if ! verto_ok; then
		echo "scripts/test.sh: $VERTO_JS does not match the pinned sha256 $VERTO_SHA256" >&2
		exit 1
	fi
fi
echo "$VERTO_JS"

# --- checks and tests ---------------------------------------------------------------------
export NKB_REQUIRE_PEERS=1
failed=()

phase "go vet"
go vet ./... || failed+=("go vet")

phase "gofmt"
if ! unformatted=$(find . -name '*.go' -not -path './node_modules/*' -not -path './.tmp/*' \
	-not -path '*/testdata/*' -print0 | xargs -0 -r gofmt -l); then
	failed+=("gofmt (parse errors above)")
elif [[ -n $unformatted ]]; then
	echo "gofmt needed on:"
	echo "$unformatted"
	failed+=("gofmt")
fi

# staticcheck, pinned, run through go run (the module proxy fetches it once; no go.mod entry).
STATICCHECK="honnef.co/go/tools/cmd/staticcheck@v0.8.2"
phase "staticcheck"
go run "$STATICCHECK" ./... || failed+=("staticcheck")

phase "go test"
go test -race -timeout 25m ./... || failed+=("go test")

phase "done"
if ((${#failed[@]})); then
	echo "FAILED: ${failed[*]}"
	exit 1
fi
echo "all checks passed"
