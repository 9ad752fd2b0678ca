#!/usr/bin/env bash
# Builds the nkbridge Debian package: deploy/build-deb.sh [OUT_DIR] (default: ./dist).
# The binary (cgo, needs libopus-dev and pkg-config), the systemd unit (deploy/nkbridge.service
# with the binary at /usr/bin/nkbridge), /etc/nkbridge/nkbridge.yaml (the embedded defaults) and
# maintainer scripts creating the system user nkbridge. nfpm runs through `go run` at a pinned
# version; prints the path of the .deb.
set -euo pipefail

NFPM="github.com/goreleaser/nfpm/v2/cmd/nfpm@v2.48.0"
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$(pwd)
OUT=$(mkdir -p "${1:-dist}" && cd "${1:-dist}" && pwd)
STAGE=$(mktemp -d)
trap 'rm -rf "$STAGE"' EXIT

CGO_ENABLED=1 go build -trimpath -ldflags "-s -w" -o "$STAGE/nkbridge" ./cmd/nkbridge
version=$("$STAGE/nkbridge" -version | awk '{print $2}')
"$STAGE/nkbridge" -print-defaults > "$STAGE/nkbridge.yaml"
sed 's|/usr/local/bin/nkbridge|/usr/bin/nkbridge|g' deploy/nkbridge.service > "$STAGE/nkbridge.service"
if grep -q /usr/local/ "$STAGE/nkbridge.service"; then
	echo "build-deb.sh: the unit still names /usr/local" >&2
	exit 1
fi
cat > "$STAGE/copyright" <<COPYRIGHT
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: nkbridge
Source: https://github.com/nkbridge/nkbridge

Files: *
Copyright: nkbridge developers
License: proprietary
COPYRIGHT

cp -r deploy/deb "$STAGE/deb"

export NKB_DEB_VERSION="$version" NKB_DEB_ARCH="$(go env GOARCH)"
(cd "$STAGE" && go run "$NFPM" package --config "$ROOT/deploy/nfpm.yaml" --packager deb --target "$OUT" >&2)
ls "$OUT"/nkbridge_"${version}"-1_"$(go env GOARCH)".deb
