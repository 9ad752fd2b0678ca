#!/bin/sh
# nkbridge postrm: on purge, remove the configuration folder, the state folder (recordings)
# and the system user and group the package created.
set -e
if [ -d /run/systemd/system ]; then
	systemctl --system daemon-reload >/dev/null || true
fi
if [ "$1" = "purge" ]; then
	rm -rf /etc/nkbridge /var/lib/nkbridge
	if getent passwd nkbridge >/dev/null; then
		deluser --system --quiet nkbridge >/dev/null || true
	fi
	if getent group nkbridge >/dev/null; then
		delgroup --system --quiet nkbridge >/dev/null || true
	fi
fi
exit 0
