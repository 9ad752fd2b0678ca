package main

import (
	"context"
	"testing"
	"time"

	nkclient "github.com/nkbridge/nkbridge/client"
	"github.com/nkbridge/nkbridge/internal/peers"
)

// client connects to the daemon's control API with the Go client and logs
// in as user (any login is accepted without configured users); it is
// closed when the test ends. opts.Logger defaults to the test log.
func (d *daemon) client(user string, opts nkclient.Options) *nkclient.Client {
	d.t.Helper()
	if opts.Logger == nil {
		opts.Logger = peers.TestLogger(d.t)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := nkclient.Dial(ctx, "ws://"+d.addr+"/", opts)
	if err != nil {
		d.t.Fatal(err)
	}
	d.t.Cleanup(func() { c.Close() })
	if _, err := c.Login(ctx, user, "pw"); err != nil {
		d.t.Fatalf("login %s: %v", user, err)
	}
	return c
}

// p2pSession starts a signalling-only session and returns its id.
func p2pSession(t *testing.T, c *nkclient.Client) string {
	t.Helper()
	s, err := c.StartSession(context.Background(), nkclient.SessionStart{Type: "p2p", Offer: &nkclient.SDP{SDP: "v=0"}})
	if err != nil {
		t.Fatalf("p2p session: %v", err)
	}
	return s.SessionID
}
