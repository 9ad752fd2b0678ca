package main

import (
	"strings"

	"github.com/goccy/go-yaml"
)

// redactedYAML renders cfg as YAML with every secret (passwords, password hashes, keys of
// credentials) replaced, so -check-config output can be pasted into a bug report.
func redactedYAML(cfg *Config) ([]byte, error) {
	b, err := yaml.Marshal(cfg)
	if err != nil {
		return nil, err
	}
	var tree any
	if err := yaml.Unmarshal(b, &tree); err != nil {
		return nil, err
	}
	return yaml.Marshal(redact(tree))
}

// secretKey reports whether a config key holds a secret.
func secretKey(k string) bool {
	k = strings.ToLower(k)
	return strings.Contains(k, "password") || strings.Contains(k, "secret") || k == "token"
}

func redact(v any) any {
	switch t := v.(type) {
	case map[string]any:
		for k, val := range t {
			if s, ok := val.(string); ok && s != "" && secretKey(k) {
				t[k] = "<redacted>"
				continue
			}
			t[k] = redact(val)
		}
	case []any:
		for i := range t {
			t[i] = redact(t[i])
		}
	}
	return v
}
