package sip

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"
)

// parseSessionExpires reads Session-Expires (or its compact form x) of msg.
func parseSessionExpires(msg interface{ GetHeader(string) sip.Header }) (time.Duration, string, error) {
	h := msg.GetHeader("Session-Expires")
	if h == nil {
		h = msg.GetHeader("x")
	}
	if h == nil {
		return 0, "", nil
	}
	v, params, _ := strings.Cut(h.Value(), ";")
	n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 32)
	if err != nil || n == 0 {
		return 0, "", errors.New("bad Session-Expires")
	}
	refresher := ""
	for _, p := range strings.Split(params, ";") {
		k, val, _ := strings.Cut(strings.TrimSpace(p), "=")
		if strings.EqualFold(k, "refresher") {
			refresher = strings.ToLower(strings.TrimSpace(val))
			if refresher != "uac" && refresher != "uas" {
				return 0, "", errors.New("bad refresher")
			}
		}
	}
	return time.Duration(min(n, 86400)) * time.Second, refresher, nil
}

func hasOption(msg interface{ GetHeaders(string) []sip.Header }, names []string, opt string) bool {
	for _, n := range names {
		for _, h := range msg.GetHeaders(n) {
			for _, o := range strings.Split(h.Value(), ",") {
				if strings.EqualFold(strings.TrimSpace(o), opt) {
					return true
				}
			}
		}
	}
	return false
}

func peerSupportsTimer(msg interface{ GetHeaders(string) []sip.Header }) bool {
	return hasOption(msg, []string{"Supported", "k"}, "timer")
}

func (s *Server) negotiateInboundTimer(c *Call, req *sip.Request, se time.Duration, refresher string) {
	if s.cfg.SessionTimer.Disabled {
		return
	}
	supports := peerSupportsTimer(req)
	if se == 0 {
		if !supports {
			return
		}
		se, refresher = s.cfg.SessionTimer.Expires, "uac"
	}
	if refresher == "" {
		refresher = "uas"
		if supports {
			refresher = "uac"
		}
	}
	c.se, c.refresher, c.weRefresh = se, refresher, refresher == "uas"
}

// ourRefresherRole names the refresher as seen by a transaction we send (we are its UAC).
// Caller holds c.mu.
func (c *Call) ourRefresherRole() string {
	if c.weRefresh {
		return "uac"
	}
	return "uas"
}

func (c *Call) startSessionTimer() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stTimer != nil {
		c.stTimer.Stop()
		c.stTimer = nil
	}
	if c.se <= 0 || c.state == stateEnded {
		return
	}
	var d time.Duration
	if c.weRefresh {
		d = c.se / 2
	} else {
		d = c.se - min(32*time.Second, c.se/3)
	}
	c.stTimer = time.AfterFunc(d, func() { c.s.goTracked(c.onSessionTimer) })
}

func (c *Call) onSessionTimer() {
	select {
	case <-c.done:
		return
	default:
	}
	c.mu.Lock()
	we := c.weRefresh
	c.mu.Unlock()
	if !we {
		c.s.log.Info("sip session expired without refresh", "call", c.id)
		ctx, cancel := context.WithTimeout(context.Background(), 4*time.Second)
		_ = c.sendBye(ctx)
		cancel()
		c.finish(End{Cause: CauseSessionExpiry})
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 32*time.Second)
	defer cancel()
	if err := c.refreshSession(ctx); err != nil {
		var se *StatusError
		if errors.As(err, &se) && se.Code == 491 {
			time.Sleep(time.Second)
			err = c.refreshSession(ctx)
		}
		if err != nil {
			c.s.log.Info("sip session refresh failed", "call", c.id, "err", err)
			_ = c.sendBye(ctx)
			c.finish(End{Cause: CauseSessionExpiry, Reason: err.Error()})
		}
	}
}

// refreshSession refreshes the session with UPDATE when the peer allows it, else re-INVITE.
func (c *Call) refreshSession(ctx context.Context) error {
	c.mu.Lock()
	useUpdate := strings.Contains(strings.ToUpper(c.peerAllow), "UPDATE")
	se := c.se
	local := c.localSDP
	c.mu.Unlock()
	if !useUpdate {
		_, err := c.Reinvite(ctx, local)
		return err
	}
	req := c.newRequest(sip.UPDATE)
	req.AppendHeader(sip.NewHeader("Session-Expires", fmt.Sprintf("%d;refresher=uac", int(se/time.Second))))
	req.AppendHeader(sip.NewHeader("Supported", "timer"))
	res, err := c.doOK(ctx, req)
	if err != nil {
		return err
	}
	c.refreshedByResponse(res)
	return nil
}

// refreshedBy handles a refresh request (re-INVITE/UPDATE) from the peer and adds our
// Session-Expires to its 2xx.
func (c *Call) refreshedBy(req *sip.Request, res *sip.Response) {
	se, refresher, err := parseSessionExpires(req)
	c.mu.Lock()
	if err == nil && se >= c.s.cfg.SessionTimer.MinSE && !c.s.cfg.SessionTimer.Disabled {
		c.se = se
		if refresher == "" {
			refresher = "uac"
		}
		c.weRefresh = refresher == "uas"
	}
	if h := req.GetHeader("Allow"); h != nil {
		c.peerAllow = h.Value()
	}
	if c.se > 0 {
		role := "uac"
		if c.weRefresh {
			role = "uas"
		}
		res.AppendHeader(sip.NewHeader("Session-Expires", fmt.Sprintf("%d;refresher=%s", int(c.se/time.Second), role)))
	}
	c.mu.Unlock()
	c.startSessionTimer()
}

// refreshedByResponse applies the Session-Expires of a 2xx to a refresh we sent.
func (c *Call) refreshedByResponse(res *sip.Response) {
	se, refresher, err := parseSessionExpires(res)
	c.mu.Lock()
	if err == nil && se > 0 {
		c.se = se
		c.weRefresh = refresher != "uas"
	}
	if h := res.GetHeader("Allow"); h != nil {
		c.peerAllow = h.Value()
	}
	c.mu.Unlock()
	c.startSessionTimer()
}
