package defaults

import (
	"strings"
	"testing"
	"time"
)

func TestLookups(t *testing.T) {
	if d := Duration("api.ping_interval"); d != 60*time.Second {
		t.Errorf("api.ping_interval = %v", d)
	}
	if n := Int("api.max_frame_bytes"); n != 262144 {
		t.Errorf("api.max_frame_bytes = %d", n)
	}
	if f := Float("api.request_rate"); f != 1000 {
		t.Errorf("api.request_rate = %v", f)
	}
	if s := String("api.listen"); s != "127.0.0.1:9010" {
		t.Errorf("api.listen = %q", s)
	}
	if !Bool("media.enabled") {
		t.Error("media.enabled = false")
	}
	if _, ok := Lookup("api.nope"); ok {
		t.Error("api.nope found")
	}
	if _, ok := Lookup("api.listen.deeper"); ok {
		t.Error("a key below a scalar found")
	}
	if !strings.HasPrefix(YAML(), "# nkbridge embedded defaults") {
		t.Error("YAML() is not defaults.yaml")
	}
	// A missing key or a wrong type panics with the key's name: a programming error.
	for name, f := range map[string]func(){
		"missing": func() { Duration("api.nope") }, "not a duration": func() { Duration("api.listen") },
		"not an int": func() { Int("api.listen") }, "not a string": func() { String("api.max_owned") },
	} {
		func() {
			defer func() {
				if r := recover(); r == nil || !strings.Contains(r.(string), "api.") {
					t.Errorf("%s: recovered %v", name, r)
				}
			}()
			f()
		}()
	}
}

func TestListsAndMaps(t *testing.T) {
	if l := Strings("sip.sip_prefixes"); len(l) != 2 || l[0] != "sip:" || l[1] != "sip-" {
		t.Errorf("sip.sip_prefixes = %q", l)
	}
	m := StringMap("verto.extensions")
	if len(m) != 2 || m["echo"] != "echo" || m["park"] != "park" {
		t.Errorf("verto.extensions = %v", m)
	}
	m["echo"] = "changed" // a copy: the next caller gets the default again
	if StringMap("verto.extensions")["echo"] != "echo" {
		t.Error("StringMap returned shared state")
	}
}
