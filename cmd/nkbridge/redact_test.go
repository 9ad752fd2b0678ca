package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestCheckConfigRedactsSecrets(t *testing.T) {
	cfg, err := loadConfig("", func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	cfg.Users = []UserConfig{{User: "alice", PasswordHash: "pbkdf2-sha256$SECRETHASH"}}
	cfg.FreeSWITCH.ESLPassword = "SECRETESL"
	out, err := redactedYAML(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"SECRETHASH", "SECRETESL"} {
		if bytes.Contains(out, []byte(s)) {
			t.Fatalf("-check-config output leaks %s:\n%s", s, out)
		}
	}
	if !strings.Contains(string(out), "alice") || strings.Count(string(out), "<redacted>") < 2 {
		t.Fatalf("redaction lost the structure or missed a secret:\n%s", out)
	}
}
