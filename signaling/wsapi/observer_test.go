package wsapi_test

import (
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nkbridge/nkbridge/internal/peers"
	"github.com/nkbridge/nkbridge/signaling"
	"github.com/nkbridge/nkbridge/signaling/wsapi"
)

type countObserver struct {
	mu             sync.Mutex
	opened, closed int
	errors         map[int]int
}

func (o *countObserver) APIConnOpened() { o.mu.Lock(); o.opened++; o.mu.Unlock() }
func (o *countObserver) APIConnClosed() { o.mu.Lock(); o.closed++; o.mu.Unlock() }
func (o *countObserver) APIError(code int) {
	o.mu.Lock()
	o.errors[code]++
	o.mu.Unlock()
}
func (o *countObserver) get() (int, int, map[int]int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	m := map[int]int{}
	for k, v := range o.errors {
		m[k] = v
	}
	return o.opened, o.closed, m
}

// The Observer counts connections and error replies by code; Config.Handler
// serves plain HTTP requests on the API port while upgrades still reach the API.
func TestObserverAndHandler(t *testing.T) {
	o := &countObserver{errors: map[int]int{}}
	page := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "page "+r.URL.Path) })
	env := startServer(t, wsapi.Config{Observer: o, Handler: page}, signaling.Options{})
	c := dial(t, env.url)
	c.Login("alice", "pw")
	c.Fail(signaling.CodeUnknownSessionType, "media", "session", "start", msg{"type": "nope", "offer": msg{"sdp": "x"}})
	c.Fail(signaling.CodeNoMediaserver, "media", "session", "start", msg{"type": "echo", "offer": msg{"sdp": "x"}})
	c.Fail(signaling.CodeNoMediaserver, "media", "session", "start", msg{"type": "echo", "offer": msg{"sdp": "x"}})
	c2 := dial(t, strings.TrimSuffix(env.url, "/")+"/api")
	c2.Login("bob", "pw")
	peers.WaitFor(t, 2*time.Second, "two connections", func() bool { op, _, _ := o.get(); return op == 2 })
	c2.WS.Close()
	peers.WaitFor(t, 2*time.Second, "one closed", func() bool { _, cl, _ := o.get(); return cl == 1 })
	if _, _, errs := o.get(); errs[signaling.CodeNoMediaserver] != 2 || errs[signaling.CodeUnknownSessionType] != 1 || len(errs) != 2 {
		t.Fatalf("errors = %v", errs)
	}

	base := "http" + strings.TrimPrefix(strings.TrimSuffix(env.url, "/"), "ws")
	for path, want := range map[string]string{"/": "page /", "/demo/x.js": "page /demo/x.js"} {
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(b) != want {
			t.Errorf("GET %s = %q, want %q", path, b, want)
		}
	}
	// A plain GET of /api is not the page.
	resp, err := http.Get(base + "/api")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		t.Errorf("GET /api = %d", resp.StatusCode)
	}
	env.stop()
	if op, cl, _ := o.get(); op != 2 || cl != 2 {
		t.Fatalf("opened %d closed %d", op, cl)
	}
}
