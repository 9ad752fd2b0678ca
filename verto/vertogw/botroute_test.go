package vertogw

import (
	"testing"

	"github.com/nkbridge/nkbridge/signaling"
)

// TestBotRoute: bot-<name> is a bot session of that name (verto.bot_prefix); "-" turns it
// off; a bad name is refused.
func TestBotRoute(t *testing.T) {
	var c Config
	r, err := c.Route("bot-Support")
	if err != nil || r.SessionType != signaling.TypeBot || r.Bot != "Support" {
		t.Fatalf("bot-Support: %+v, %v", r, err)
	}
	if _, err := c.Route("bot-"); err == nil {
		t.Fatal("bot- without a name routed")
	}
	c.BotPrefix = "-"
	if r, err := c.Route("bot-support"); err != nil || r.CallType != signaling.CallTypeUser {
		t.Fatalf("bot prefix off: %+v, %v", r, err)
	}
}
