package fakefs

import (
	"encoding/xml"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// The shipped FreeSWITCH configuration (testdata/freeswitch) and the fake agree: same
// context, header, dialplan actions, conference profile, loopback-only event socket with a
// non-default password.

const cfgDir = "../../testdata/freeswitch"

type param struct {
	Name  string `xml:"name,attr"`
	Value string `xml:"value,attr"`
}

func params(ps []param) map[string]string {
	m := map[string]string{}
	for _, p := range ps {
		m[p.Name] = p.Value
	}
	return m
}

func readXML(t *testing.T, rel string, v any) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(cfgDir, rel))
	if err != nil {
		t.Fatal(err)
	}
	// FreeSWITCH pre-processor lines are XML processing-instruction-like elements; they
	// parse as ordinary elements.
	if err := xml.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", rel, err)
	}
}

func TestShippedConfigMatchesFake(t *testing.T) {
	var es struct {
		Name   string  `xml:"name,attr"`
		Params []param `xml:"settings>param"`
	}
	readXML(t, "autoload_configs/event_socket.conf.xml", &es)
	p := params(es.Params)
	if es.Name != "event_socket.conf" || p["listen-ip"]+":"+p["listen-port"] != ESLAddr {
		t.Fatalf("event socket %q on %s:%s", es.Name, p["listen-ip"], p["listen-port"])
	}
	if pw := p["password"]; pw == "" || pw == DefaultPassword || strings.ContainsAny(pw, " \t") {
		t.Fatalf("event socket password %q must be set and not the default", pw)
	}
	if p["apply-inbound-acl"] != "loopback.auto" {
		t.Fatal("event socket without loopback ACL")
	}

	var prof struct {
		Name   string  `xml:"name,attr"`
		Params []param `xml:"settings>param"`
	}
	readXML(t, "sip_profiles/nkbridge.xml", &prof)
	p = params(prof.Params)
	if prof.Name != SIPProfile || p["context"] != DefaultContext || p["sip-ip"]+":"+p["sip-port"] != SIPAddr || p["rtp-ip"] != "127.0.0.1" {
		t.Fatalf("sip profile %q %v", prof.Name, p)
	}
	if p["auth-calls"] == "false" && p["apply-inbound-acl"] != "loopback.auto" {
		t.Fatal("unauthenticated SIP profile must be restricted to loopback")
	}

	var dp struct {
		Contexts []struct {
			Name       string `xml:"name,attr"`
			Extensions []struct {
				Name       string `xml:"name,attr"`
				Conditions []struct {
					Field      string `xml:"field,attr"`
					Expression string `xml:"expression,attr"`
					Actions    []struct {
						App  string `xml:"application,attr"`
						Data string `xml:"data,attr"`
					} `xml:"action"`
				} `xml:"condition"`
			} `xml:"extension"`
		} `xml:"context"`
	}
	readXML(t, "dialplan/nkbridge.xml", &dp)
	if len(dp.Contexts) != 1 || dp.Contexts[0].Name != DefaultContext || len(dp.Contexts[0].Extensions) < 1 {
		t.Fatalf("dialplan %+v", dp)
	}
	cond := dp.Contexts[0].Extensions[0].Conditions[0]
	if cond.Field != "${sip_h_"+SessionHeader+"}" {
		t.Fatalf("dialplan matches %q, not the session header", cond.Field)
	}
	if cond.Expression != sessionIDPattern.String() {
		t.Fatalf("dialplan expression %q differs from the fake's Route %q", cond.Expression, sessionIDPattern)
	}
	re := regexp.MustCompile(cond.Expression)
	for _, ok := range []string{"7b0e2b1c-5f55-4c1e-9a7e-4d2b7c9f0a11", "sess.1_x"} {
		if !re.MatchString(ok) {
			t.Errorf("session id %q refused", ok)
		}
	}
	for _, bad := range []string{"", "a b", "x;hangup", "-x", strings.Repeat("a", 129)} {
		if re.MatchString(bad) {
			t.Errorf("session id %q accepted", bad)
		}
	}
	var apps []string
	set := map[string]string{}
	for _, a := range cond.Actions {
		apps = append(apps, a.App)
		if a.App == "set" && !strings.Contains(a.Data, "${") {
			k, v, _ := strings.Cut(a.Data, "=")
			set[k] = v
		}
	}
	// The fake's InboundCall answers then parks, like this extension.
	if got := strings.Join(apps, ","); !strings.HasSuffix(got, "answer,park") {
		t.Fatalf("dialplan actions %s, want …answer,park", got)
	}
	// The variables the fake's Route gives a call are the ones this extension sets (all
	// before answer: FreeSWITCH reads the RTP ones when the call's media starts).
	if !maps.Equal(set, DialplanVars()) {
		t.Fatalf("dialplan sets %v, the fake's Route %v", set, DialplanVars())
	}

	var conf struct {
		Profiles []struct {
			Name   string  `xml:"name,attr"`
			Params []param `xml:"param"`
		} `xml:"profiles>profile"`
	}
	readXML(t, "autoload_configs/conference.conf.xml", &conf)
	found := false
	for _, pr := range conf.Profiles {
		if pr.Name == ConferenceProfile {
			found = true
			if params(pr.Params)["caller-controls"] != "none" {
				t.Error("conference profile lets callers control the room with DTMF")
			}
			// The fake's default (Options.NoVerboseEvents false) is this profile's setting.
			if params(pr.Params)["verbose-events"] != "true" {
				t.Error("conference profile without verbose-events: member events would carry no X-NKB-Session")
			}
		}
	}
	if !found {
		t.Fatalf("no conference profile %q", ConferenceProfile)
	}
}

// FreeSWITCH 1.10 logs "rtp-timeout-sec deprecated use media_timeout variable" (and the
// same for rtp-hold-timeout-sec) at every start for these sofia profile parameters
// (mod_sofia/sofia.c): the shipped profile must not use them, and the dialplan must set
// their replacements, the channel variables media_timeout / media_hold_timeout (in
// milliseconds), plus the IGNORE_MARK_BIT guard, before the call is answered.
func TestShippedConfigNotDeprecated(t *testing.T) {
	var prof struct {
		Params []param `xml:"settings>param"`
	}
	readXML(t, "sip_profiles/nkbridge.xml", &prof)
	deprecated := map[string]string{"rtp-timeout-sec": "media_timeout", "rtp-hold-timeout-sec": "media_hold_timeout"}
	for _, p := range prof.Params {
		if repl, bad := deprecated[strings.ToLower(p.Name)]; bad {
			t.Errorf("sip profile parameter %s is deprecated in FreeSWITCH 1.10: set the %s variable in the dialplan", p.Name, repl)
		}
	}
	var dp struct {
		Actions []struct {
			App  string `xml:"application,attr"`
			Data string `xml:"data,attr"`
		} `xml:"context>extension>condition>action"`
	}
	readXML(t, "dialplan/nkbridge.xml", &dp)
	answered := false
	want := map[string]bool{"media_timeout": false, "media_hold_timeout": false, "rtp_manual_rtp_bugs": false}
	for _, a := range dp.Actions {
		switch a.App {
		case "answer":
			answered = true
		case "set":
			k, v, _ := strings.Cut(a.Data, "=")
			if _, ok := want[k]; !ok {
				continue
			}
			if answered {
				t.Errorf("%s is set after answer: FreeSWITCH has read it already", k)
			}
			want[k] = true
			switch k {
			case "media_timeout", "media_hold_timeout":
				if ms, err := strconv.Atoi(v); err != nil || ms < 1000 {
					t.Errorf("%s=%q: want milliseconds (at least 1000)", k, v)
				}
			case "rtp_manual_rtp_bugs":
				if !strings.Contains(v, "IGNORE_MARK_BIT") {
					t.Errorf("rtp_manual_rtp_bugs=%q without IGNORE_MARK_BIT", v)
				}
			}
		}
	}
	for k, ok := range want {
		if !ok {
			t.Errorf("the dialplan does not set %s", k)
		}
	}
}
