#!/bin/sh
# nkbridge prerm: stop the service (SIGTERM drains, see the unit's TimeoutStopSec).
set -e
if [ -d /run/systemd/system ] && [ "$1" = "remove" ]; then
	systemctl --system stop nkbridge.service >/dev/null 2>&1 || true
	systemctl --system disable nkbridge.service >/dev/null 2>&1 || true
fi
exit 0
