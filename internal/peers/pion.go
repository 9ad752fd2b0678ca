package peers

import (
	"io"
	"net"

	"github.com/pion/ice/v4"
	"github.com/pion/logging"
	"github.com/pion/webrtc/v4"
)

// LoopbackPion sets se up for a pion peer in a test that keeps to the network rule: ICE on
// 127.0.0.1 over UDP4 only (the loopback candidate included), no mDNS, no STUN, and pion's
// own logging switched off.
func LoopbackPion(se *webrtc.SettingEngine) {
	se.LoggerFactory = quietPion{}
	se.SetIPFilter(func(ip net.IP) bool { return ip.Equal(net.IPv4(127, 0, 0, 1)) })
	se.SetIncludeLoopbackCandidate(true)
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
}

// quietPion is a pion logger factory whose loggers write nothing.
type quietPion struct{}

func (quietPion) NewLogger(string) logging.LeveledLogger {
	return logging.NewDefaultLeveledLoggerForScope("", logging.LogLevelDisabled, io.Discard)
}
