package main

import "testing"

// The media offers SDES keys exactly when a SIP trunk or user may use SRTP; the SIP users
// store hands each user's mode to the SIP server.
func TestSIPWantsSDES(t *testing.T) {
	c := SIPConfig{Enabled: true, Users: []SIPUserConfig{{User: "a", Password: "x"}}, Trunks: []SIPTrunkConfig{{Name: "t", Host: "127.0.0.1:5", SRTP: "off"}}}
	if c.wantsSDES() {
		t.Fatal("no SRTP configured, but SDES offers on")
	}
	c.Trunks[0].SRTP = "mandatory"
	if !c.wantsSDES() {
		t.Fatal("trunk with mandatory SRTP: SDES offers off")
	}
	c.Trunks[0].SRTP = ""
	c.Users[0].SRTP = "optional"
	if !c.wantsSDES() {
		t.Fatal("user with optional SRTP: SDES offers off")
	}
	sc, us, err := c.sipServerConfig()
	if err != nil {
		t.Fatal(err)
	}
	if us.SRTP("a") != "optional" || sc.Trunks[0].SRTP != "" {
		t.Fatalf("user srtp %q, trunk %q", us.SRTP("a"), sc.Trunks[0].SRTP)
	}
	c.Enabled = false
	if c.wantsSDES() {
		t.Fatal("SIP disabled: SDES offers on")
	}
}
