#!/bin/sh
# nkbridge postinst: the system user, ownership of the configuration, systemd reload.
# The service is not enabled or started: edit /etc/nkbridge/nkbridge.yaml (users, listen
# addresses) first, then: systemctl enable --now nkbridge
set -e

if [ "$1" = "configure" ] || [ "$1" = "" ]; then
	if ! getent group nkbridge >/dev/null; then
		addgroup --system --quiet nkbridge
	fi
	if ! getent passwd nkbridge >/dev/null; then
		adduser --system --quiet --ingroup nkbridge --home /var/lib/nkbridge --no-create-home \
			--shell /usr/sbin/nologin --gecos "nkbridge telephony bridge" nkbridge
	fi
	chown root:nkbridge /etc/nkbridge /etc/nkbridge/nkbridge.yaml
	chmod 0750 /etc/nkbridge
	chmod 0640 /etc/nkbridge/nkbridge.yaml
fi

if [ -d /run/systemd/system ]; then
	systemctl --system daemon-reload >/dev/null || true
fi
exit 0
