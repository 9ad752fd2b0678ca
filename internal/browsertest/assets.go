package browsertest

import (
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/nkbridge/nkbridge/internal/peers"
)

// Assets returns a handler serving the browser-side test libraries, to mount under a prefix
// of the test's own 127.0.0.1 server (http.StripPrefix):
//
//	/rtc-helpers.js   testdata/browser/rtc-helpers.js (classic script defining window.nkb;
//	                  pages of a browsertest browser already have it injected)
//	/sip.js/...       node_modules/sip.js/lib as ES modules: import {UserAgent} from "<prefix>/sip.js/index.js"
//	/verto.min.js     the @signalwire/js 1.5.0 bundle (classic script; defines window.Verto)
//
// It skips or fails (NKB_REQUIRE_PEERS=1) the test when sip.js or the Verto bundle is not
// installed (scripts/test.sh installs both).
func Assets(t testing.TB) http.Handler {
	t.Helper()
	root := peers.RepoRoot(t)
	sipLib := filepath.Join(root, "node_modules", "sip.js", "lib")
	peers.NeedFile(t, filepath.Join(sipLib, "index.js"), "npm ci at the repository root")
	verto := VertoJS(t)
	mux := http.NewServeMux()
	mux.HandleFunc("/rtc-helpers.js", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/javascript; charset=utf-8")
		http.ServeFile(w, r, filepath.Join(root, "testdata", "browser", "rtc-helpers.js"))
	})
	mux.HandleFunc("/verto.min.js", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/javascript; charset=utf-8")
		http.ServeFile(w, r, verto)
	})
	mux.Handle("/sip.js/", http.StripPrefix("/sip.js/", jsTypes(http.FileServer(http.Dir(sipLib)))))
	return mux
}

// jsTypes makes sure .js files are served as JavaScript (module scripts require it).
func jsTypes(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if filepath.Ext(r.URL.Path) == ".js" {
			w.Header().Set("Content-Type", "text/javascript; charset=utf-8")
		}
		h.ServeHTTP(w, r)
	})
}

// VertoJS returns the path of the @signalwire/js 1.5.0 bundle (.tmp/vendor/verto.min.js, put
// there by scripts/test.sh), or skips/fails the test per NKB_REQUIRE_PEERS.
func VertoJS(t testing.TB) string {
	t.Helper()
	p := filepath.Join(peers.RepoRoot(t), ".tmp", "vendor", "verto.min.js")
	return peers.NeedFile(t, p, "scripts/test.sh fetches it with npm pack")
}

// HelpersJS returns the source of rtc-helpers.js (window.nkb), for pages that are not opened
// by a browsertest browser.
func HelpersJS(t testing.TB) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(peers.RepoRoot(t), "testdata", "browser", "rtc-helpers.js"))
	if err != nil {
		t.Fatalf("browsertest: %v", err)
	}
	return string(b)
}
