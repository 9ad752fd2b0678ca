package signaling_test

import (
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/nkbridge/nkbridge"

// frontEnds are the packages that meet the backends only through package signaling, each with
// its own protocol packages (module-relative prefixes).
var frontEnds = map[string][]string{
	"signaling/wsapi": {"signaling/wsapi"},
	"sip/sipgw":       {"sip"},
	"verto/vertogw":   {"verto"},
}

// importViolations lists the module packages pkg depends on (go list -deps) beyond signaling,
// signaling/auth, internal/... and its own protocol packages: a backend (media, fsbridge,
// signaling/embedded, ...) is a violation.
func importViolations(t *testing.T, pkg string, own []string) []string {
	t.Helper()
	out, err := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}}", module+"/"+pkg).Output()
	if err != nil {
		t.Fatalf("go list -deps %s: %v", pkg, err)
	}
	allowed := func(p string) bool {
		switch {
		case p == "signaling", p == "signaling/auth", p == "internal" || strings.HasPrefix(p, "internal/"):
			return true
		}
		for _, o := range own {
			if p == o || strings.HasPrefix(p, o+"/") {
				return !strings.HasPrefix(p, "signaling/embedded")
			}
		}
		return false
	}
	var bad []string
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		rel, ok := strings.CutPrefix(line, module+"/")
		if !ok || rel == pkg {
			continue
		}
		if !allowed(rel) {
			bad = append(bad, rel)
		}
	}
	return bad
}

// TestFrontEndsImportOnlySignaling: the front ends (control API, SIP, Verto) reach sessions'
// media only through signaling's capability interfaces, never by importing a backend.
func TestFrontEndsImportOnlySignaling(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go list")
	}
	for pkg, own := range frontEnds {
		if bad := importViolations(t, pkg, own); len(bad) > 0 {
			t.Errorf("%s imports %v: front ends may import only signaling, their own protocol package and internal/...", pkg, bad)
		}
	}
	// The check sees a backend import: the daemon's wiring imports them all.
	if bad := importViolations(t, "cmd/nkbridge", []string{"cmd/nkbridge"}); !contains(bad, "media") || !contains(bad, "signaling/embedded") || !contains(bad, "fsbridge") {
		t.Fatalf("the import check misses the backends cmd/nkbridge imports: %v", bad)
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
