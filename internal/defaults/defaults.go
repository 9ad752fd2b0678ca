// Package defaults holds nkbridge's embedded default configuration, defaults.yaml: every
// configuration key with its default value and a comment. It is the one source of those
// values. The daemon (cmd/nkbridge) parses it as the base of its configuration, and the
// packages' constructors take the default of a field left zero from it by key (Duration,
// Int, Float, String), so that a library used without the daemon behaves like the daemon's
// defaults.
package defaults

import (
	_ "embed"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/goccy/go-yaml"
)

//go:embed defaults.yaml
var yamlText string

// YAML returns the text of defaults.yaml (what -print-defaults prints).
func YAML() string { return yamlText }

// parsed is defaults.yaml as nested maps, parsed once; never modified.
var parsed = sync.OnceValues(func() (map[string]any, error) {
	var m map[string]any
	err := yaml.Unmarshal([]byte(yamlText), &m)
	return m, err
})

// Lookup returns the value of a dotted key ("api.ping_interval") as parsed from the YAML.
func Lookup(key string) (any, bool) {
	m, err := parsed()
	if err != nil {
		return nil, false
	}
	var cur any = m
	for _, part := range strings.Split(key, ".") {
		mm, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = mm[part]; !ok {
			return nil, false
		}
	}
	return cur, true
}

// must panics with a message naming key: a constructor asking for a key that defaults.yaml
// lacks is a programming error, caught by any test that builds it.
func must(key string) any {
	v, ok := Lookup(key)
	if !ok {
		panic(fmt.Sprintf("defaults: defaults.yaml has no key %q", key))
	}
	return v
}

// Duration returns the duration at key ("60s").
func Duration(key string) time.Duration {
	v := must(key)
	s, ok := v.(string)
	if !ok {
		panic(fmt.Sprintf("defaults: %s is %v, not a duration", key, v))
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		panic(fmt.Sprintf("defaults: %s: %v", key, err))
	}
	return d
}

// Int returns the integer at key.
func Int(key string) int {
	switch v := must(key).(type) {
	case uint64:
		return int(v)
	case int64:
		return int(v)
	case int:
		return v
	default:
		panic(fmt.Sprintf("defaults: %s is %v, not an integer", key, v))
	}
}

// Float returns the number at key.
func Float(key string) float64 {
	switch v := must(key).(type) {
	case float64:
		return v
	case uint64:
		return float64(v)
	case int64:
		return float64(v)
	case int:
		return float64(v)
	default:
		panic(fmt.Sprintf("defaults: %s is %v, not a number", key, v))
	}
}

// String returns the string at key.
func String(key string) string {
	v, ok := must(key).(string)
	if !ok {
		panic(fmt.Sprintf("defaults: %s is not a string", key))
	}
	return v
}

// Bool returns the boolean at key.
func Bool(key string) bool {
	v, ok := must(key).(bool)
	if !ok {
		panic(fmt.Sprintf("defaults: %s is not a boolean", key))
	}
	return v
}

// Of returns the value at key as the type of like (time.Duration, int, int64, float64, string
// or bool): what a field of that type defaults to, for tests comparing a package's defaults
// with defaults.yaml.
func Of(key string, like any) any {
	switch like.(type) {
	case time.Duration:
		return Duration(key)
	case int:
		return Int(key)
	case int64:
		return int64(Int(key))
	case float64:
		return Float(key)
	case string:
		return String(key)
	case bool:
		return Bool(key)
	}
	panic(fmt.Sprintf("defaults: no conversion of %s to %T", key, like))
}

// Strings returns a new copy of the list of strings at key.
func Strings(key string) []string {
	l, ok := must(key).([]any)
	if !ok {
		panic(fmt.Sprintf("defaults: %s is not a list", key))
	}
	out := make([]string, 0, len(l))
	for _, v := range l {
		s, ok := v.(string)
		if !ok {
			panic(fmt.Sprintf("defaults: %s holds %v, not a string", key, v))
		}
		out = append(out, s)
	}
	return out
}

// StringMap returns a new copy of the map of strings at key.
func StringMap(key string) map[string]string {
	m, ok := must(key).(map[string]any)
	if !ok {
		panic(fmt.Sprintf("defaults: %s is not a map", key))
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		s, ok := v.(string)
		if !ok {
			panic(fmt.Sprintf("defaults: %s.%s is %v, not a string", key, k, v))
		}
		out[k] = s
	}
	return out
}
