package sip

import (
	"context"
	"fmt"
	"strings"

	"github.com/emiago/sipgo/sip"
)

// udpMaxRequest is the largest request sent over UDP when the path MTU is unknown: RFC 3261
// §18.1.1 requires anything larger to go over a congestion-controlled transport (TCP).
const udpMaxRequest = 1300

// needsStream reports whether a request of size bytes, meant for transport tp, must be sent
// over TCP instead (RFC 3261 §18.1.1).
func needsStream(tp string, size int) bool {
	return strings.EqualFold(tp, "udp") && size > udpMaxRequest
}

// fitInvite builds an INVITE with build and, when it is too large for UDP, switches the call to
// TCP towards the same host and port and builds it again (the Via, Contact and transport follow
// c.transport). Without a TCP listener it returns an error naming the size and the setting.
func (c *Call) fitInvite(build func() *sip.Request) (*sip.Request, error) {
	req := build()
	if req == nil {
		return nil, nil
	}
	c.mu.Lock()
	tp := c.transport
	c.mu.Unlock()
	n := len(req.String())
	if !needsStream(tp, n) {
		return req, nil
	}
	if c.s.port("tcp") == 0 {
		return nil, fmt.Errorf("sip: INVITE of %d bytes is over the %d-byte UDP limit (RFC 3261 §18.1.1) and there is no TCP listener to send it over (sip.listen)", n, udpMaxRequest)
	}
	c.mu.Lock()
	c.transport = "TCP"
	c.info.Transport = "tcp"
	c.tcpFallback = n
	c.mu.Unlock()
	c.s.log.Debug("sip INVITE too large for UDP, sending over TCP", "bytes", n, "limit", udpMaxRequest, "target", c.target.String())
	return build(), nil
}

// sendInvite starts the INVITE client transaction; when the INVITE was moved from UDP to TCP
// because of its size, a failure says so.
func (c *Call) sendInvite(ctx context.Context, req *sip.Request) (sip.ClientTransaction, error) {
	tx, err := c.s.sendTx(ctx, req)
	if err != nil {
		c.mu.Lock()
		n := c.tcpFallback
		c.mu.Unlock()
		if n > 0 {
			return nil, fmt.Errorf("sip: INVITE of %d bytes is over the %d-byte UDP limit (RFC 3261 §18.1.1); sending it over TCP to %s failed: %w", n, udpMaxRequest, req.Destination(), err)
		}
	}
	return tx, err
}
