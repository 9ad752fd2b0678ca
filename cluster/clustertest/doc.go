// Package clustertest holds the end-to-end tests of the cluster (issue #11): real nkbridge
// binaries joined by a real nats-server (or by their embedded NATS servers), with real peers
// (Chromium, baresip, SIPp, Kamailio) on loopback. It has no code of its own.
package clustertest
