# nkbridge container image: multi-stage build, runs as a non-root user.
#
#   docker build -t nkbridge .
#   docker run --rm --network host -v /etc/nkbridge:/etc/nkbridge:ro nkbridge
#
# Use host networking (--network host): WebRTC and RTP media use many UDP ports
# (media.udp_port, media.rtp_port_min..rtp_port_max) and the addresses in SDP
# must be the host's own; published ports behind Docker's NAT break media unless
# media.public_ip is set and the whole RTP range is published. Give it longer
# than drain_timeout to stop: docker stop -t 45 (SIGTERM drains). See
# docs/OPERATIONS.md.

# ---- build stage: Go with libopus for the Opus<->G.711 transcoder (cgo)
FROM golang:1.26-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends libopus-dev pkg-config \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=1 go build -trimpath -ldflags "-s -w" -o /out/nkbridge ./cmd/nkbridge \
 && /out/nkbridge -version \
 && /out/nkbridge -print-defaults > /out/nkbridge.yaml

# ---- runtime stage: Debian slim with the Opus runtime library
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends libopus0 ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 nkbridge \
 && useradd --system --uid 10001 --gid nkbridge --home-dir /var/lib/nkbridge --create-home --shell /usr/sbin/nologin nkbridge \
 && install -d -m 0755 /etc/nkbridge
COPY --from=build /out/nkbridge /usr/local/bin/nkbridge
# The embedded defaults, every option commented: mount your own /etc/nkbridge over it.
COPY --from=build /out/nkbridge.yaml /etc/nkbridge/nkbridge.yaml
USER nkbridge:nkbridge
WORKDIR /var/lib/nkbridge
# Control API (and the demo page at /demo/), metrics and /health, SIP, Verto, WebRTC media.
# The defaults listen on 127.0.0.1 only: set api.listen, metrics.listen, etc. (and users!) in
# the config to reach them from elsewhere.
EXPOSE 9010/tcp 9011/tcp 5060/udp 5060/tcp 8081/tcp 10000/udp 20000-20999/udp
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/nkbridge"]
CMD ["-config", "/etc/nkbridge/nkbridge.yaml", "-log-format", "json"]
