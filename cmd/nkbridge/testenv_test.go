package main

import "strings"

// testPortsEnv keeps a daemon started by a test off every default port, so
// tests (and a daemon a developer runs) never collide: SIP, Verto, WebRTC
// media on any free loopback port, SIP and Verto off unless a test turns
// them on, info-level logs. Tests pass -api-listen / -metrics-listen
// 127.0.0.1:0 (or "") themselves.
var testPortsEnv = []string{
	"NKB_LOG_LEVEL=info",
	"NKB_SIP_ENABLED=false", "NKB_SIP_LISTEN=127.0.0.1:0",
	"NKB_VERTO_LISTEN=127.0.0.1:0",
	"NKB_MEDIA_UDP_PORT=0",
	"NKB_METRICS_LISTEN=127.0.0.1:0",
	"NKB_API_LISTEN=127.0.0.1:0",
}

// testEnv is run's environment lookup: testPortsEnv, then extra (which wins).
func testEnv(extra map[string]string) func(string) (string, bool) {
	m := map[string]string{}
	for _, kv := range testPortsEnv {
		k, v, _ := strings.Cut(kv, "=")
		m[k] = v
	}
	for k, v := range extra {
		m[k] = v
	}
	return envMap(m)
}
