package media

import (
	"time"

	"github.com/pion/rtp"
)

// leg is one endpoint of a session (the caller's or the far side's).
type leg interface {
	// negotiated returns the negotiation result, nil until negotiation completes.
	negotiated() *negotiated
	// write sends one packet to the peer; the leg sets its own SSRC.
	write(k mediaKind, h *rtp.Header, payload []byte) error
	// ready reports whether packets of kind k written now can reach the peer.
	ready(k mediaKind) bool
	// requestKeyframe asks the peer for a video keyframe (PLI).
	requestKeyframe()
	// sendREMB tells the peer the maximum bit rate we want from it.
	sendREMB(bps uint64)
	// lastRTP is when the last RTP packet arrived (or touch was called).
	lastRTP() time.Time
	touch()
	// counters returns packets received and sent.
	counters() (in, out uint64)
	kind() Kind
	close()
}
