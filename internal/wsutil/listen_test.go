package wsutil

import (
	"strings"
	"testing"
)

func TestCheckListen(t *testing.T) {
	for addr, ok := range map[string]bool{
		"127.0.0.1:9010": true, "[::1]:9010": true, "localhost:9010": true, "127.0.0.2:0": true,
		"0.0.0.0:9010": false, ":9010": false, "192.0.2.1:9010": false, "example.com:9010": false, "nohostport": false,
	} {
		err := CheckListen("verto", addr, true)
		if (err == nil) != ok {
			t.Errorf("open %q: %v", addr, err)
		}
		if err != nil && !strings.HasPrefix(err.Error(), "verto listen address") {
			t.Errorf("error does not name the listener: %v", err)
		}
		if err := CheckListen("verto", addr, false); err != nil {
			t.Errorf("with users %q: %v", addr, err)
		}
	}
}
