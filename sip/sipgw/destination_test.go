package sipgw

import (
	"testing"

	"github.com/nkbridge/nkbridge/sip"
)

// A trunk call's mapped destination (sip.trunks[].destinations) is what gets routed, not the
// dialled DID.
func TestRequestUserPrefersTrunkDestination(t *testing.T) {
	info := sip.CallInfo{RequestURI: "sip:+15550100@127.0.0.1", ToUser: "+15550100"}
	if got := requestUser(info); got != "+15550100" {
		t.Fatalf("unmapped: %q", got)
	}
	info.Destination = "conf-sales"
	if got := requestUser(info); got != "conf-sales" {
		t.Fatalf("mapped: %q", got)
	}
}
