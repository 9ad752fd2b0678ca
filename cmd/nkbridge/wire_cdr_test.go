package main

import (
	"strings"
	"testing"
)

// The cdr section's checks (also -check-config's): each refusal names the key; a complete
// webhook configuration passes.
func TestCDRConfigChecks(t *testing.T) {
	ok := map[string]string{"NKB_CDR_ENABLED": "true", "NKB_CDR_SPOOL_DIR": t.TempDir(),
		"NKB_CDR_WEBHOOK_URLS": "https://hooks.example.com/cdr", "NKB_CDR_WEBHOOK_SECRET": "s",
		"NKB_CDR_WEBHOOK_ALLOWED_HOSTS": "hooks.example.com"}
	with := func(kv ...string) map[string]string {
		m := map[string]string{}
		for k, v := range ok {
			m[k] = v
		}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	if _, err := loadConfig("", testEnv(ok)); err != nil {
		t.Fatalf("complete configuration refused: %v", err)
	}
	for _, tc := range []struct {
		name string
		env  map[string]string
		key  string
	}{
		{"default allow-list", with("NKB_CDR_WEBHOOK_ALLOWED_HOSTS", ""), "cdr.webhook_allowed_hosts is empty"},
		{"host not listed", with("NKB_CDR_WEBHOOK_URLS", "https://evil.example.com/"), "cdr.webhook_allowed_hosts"},
		{"plain http off loopback", with("NKB_CDR_WEBHOOK_URLS", "http://hooks.example.com/"), "use https"},
		{"no secret", with("NKB_CDR_WEBHOOK_SECRET", ""), "cdr.webhook_secret"},
		{"no spool", with("NKB_CDR_SPOOL_DIR", ""), "cdr.spool_dir"},
		{"unknown event", with("NKB_CDR_WEBHOOK_EVENTS", "cdr,call.exploded"), "cdr.webhook_events"},
		{"webhooks while disabled", with("NKB_CDR_ENABLED", "false"), "cdr.enabled"},
		{"bad CA file", with("NKB_CDR_WEBHOOK_CA_FILE", "/nonexistent.pem"), "cdr.webhook_ca_file"},
		{"negative file size", with("NKB_CDR_FILE_MAX_BYTES", "-1"), "cdr.file_max_bytes"},
	} {
		_, err := loadConfig("", testEnv(tc.env))
		if err == nil || !strings.Contains(err.Error(), tc.key) {
			t.Errorf("%s: err %v, want one naming %q", tc.name, err, tc.key)
		}
	}
}
