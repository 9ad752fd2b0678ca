//go:build tools

// Package deps pins the project's module dependencies before the code that uses them lands.
package deps

import (
	_ "github.com/emiago/sipgo"
	_ "github.com/goccy/go-yaml"
	_ "github.com/google/uuid"
	_ "github.com/gorilla/websocket"
	_ "github.com/icholy/digest"
	_ "github.com/pion/ice/v4"
	_ "github.com/pion/rtp"
	_ "github.com/pion/sdp/v3"
	_ "github.com/pion/webrtc/v4"
	_ "github.com/prometheus/client_golang/prometheus"
	_ "go.uber.org/goleak"
)
