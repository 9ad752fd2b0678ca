package vertogw

import (
	"log/slog"
	"sync"

	"github.com/nkbridge/nkbridge/signaling"
	"github.com/nkbridge/nkbridge/verto"
)

// dtmfToClient sends the digits the session's media receives from the far side (RFC 4733, or
// found in-band in the audio of a far side without telephone-event) to the Verto client as
// verto.info {dtmf}, besides the RFC 4733 events its WebRTC leg gets. It returns the function
// that stops it (it also stops with the call). A session whose media reports no digits sends
// none.
func (g *Gateway) dtmfToClient(call *verto.Call, sid string, log *slog.Logger) (stop func()) {
	src, err := signaling.MediaAs[signaling.DTMFObserver](g.core, sid)
	if err != nil {
		return func() {}
	}
	q := make(chan rune, 32)
	stopped := make(chan struct{})
	cancel := src.OnDTMF(func(from signaling.Side, d rune) {
		if from != signaling.SideFar {
			return
		}
		select {
		case q <- d:
		default:
			log.Info("verto.info DTMF dropped: too many queued", "digit", string(d))
		}
	})
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		for {
			select {
			case d := <-q:
				if err := call.SendDTMF(string(d)); err != nil {
					log.Debug("verto.info DTMF not sent", "digit", string(d), "err", err)
				}
			case <-stopped:
				return
			case <-call.Context().Done():
				return
			}
		}
	}()
	var once sync.Once
	return func() {
		once.Do(func() {
			cancel()
			close(stopped)
		})
	}
}
