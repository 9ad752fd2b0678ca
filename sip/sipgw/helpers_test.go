package sipgw_test

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/nkbridge/nkbridge/internal/peers"
	"github.com/nkbridge/nkbridge/media"
	"github.com/nkbridge/nkbridge/signaling"
	"github.com/nkbridge/nkbridge/signaling/embedded"
	"github.com/nkbridge/nkbridge/signaling/wsapi"
	"github.com/nkbridge/nkbridge/sip"
	"github.com/nkbridge/nkbridge/sip/sipgw"
)

// env is nkbridge's SIP side on loopback: a core with the embedded media
// engine, the SIP server and the gateway between them.
type env struct {
	t    testing.TB
	log  *slog.Logger
	core *signaling.Core
	eng  *media.Engine
	be   *embedded.Backend
	srv  *sip.Server
	gw   *sipgw.Gateway
	addr string // SIP UDP/TCP address
	port int
	once sync.Once
	// base is the control API's http://127.0.0.1:port (with envOpts.page).
	base    string
	stopAPI func()
	// closeBackends run after the core and the embedded backend closed, before the engine.
	closeBackends []func()
}

type envOpts struct {
	sip     func(*sip.Config)
	gw      func(*sipgw.Config)
	media   func(*media.Config)
	noMedia bool
	logger  *slog.Logger
	// page, when set, starts the control API (wsapi) serving it at /page.html.
	page string
}

const (
	alicePass = "alice-secret"
	bobPass   = "bob-secret"
)

func newEnv(t testing.TB, o envOpts) *env {
	t.Helper()
	log := o.logger
	if log == nil {
		log = peers.TestLogger(t)
	}
	e := &env{t: t, log: log}
	backends := signaling.NewBackends()
	if !o.noMedia {
		base := peers.FreeUDPRange(t, 200)
		mc := media.Config{BindIP: netip.MustParseAddr("127.0.0.1"), RTPPortMin: base, RTPPortMax: base + 199,
			Quarantine: -1, MediaTimeout: 10 * time.Second, Logger: log.With("component", "media")}
		if o.media != nil {
			o.media(&mc)
		}
		eng, err := media.New(mc)
		if err != nil {
			t.Fatalf("media: %v", err)
		}
		e.eng = eng
		e.be = embedded.New(eng, log)
		backends.Register(embedded.Name, e.be, embedded.Types()...)
	}
	e.core = signaling.New(signaling.Options{Logger: log, Backends: backends, RingTime: 10 * time.Second})
	e.port = peers.FreePort(t)
	e.addr = fmt.Sprintf("127.0.0.1:%d", e.port)
	sc := sip.Config{
		Listen: []sip.Listen{{Transport: "udp", Addr: e.addr}, {Transport: "tcp", Addr: e.addr}},
		Users: []sip.User{
			{Name: "alice", Password: alicePass, CanCallSIP: true},
			{Name: "bob", Password: bobPass},
		},
		OutboundDomains: []string{"127.0.0.1"},
		Limits:          sip.Limits{RequestsPerSecond: 1e5, Burst: 1e5},
	}
	if o.sip != nil {
		o.sip(&sc)
	}
	gc := sipgw.Config{RingTime: 10 * time.Second}
	if o.gw != nil {
		o.gw(&gc)
	}
	gw, err := sipgw.New(gc, sipgw.Options{Logger: log, Core: e.core})
	if err != nil {
		t.Fatalf("gateway: %v", err)
	}
	e.gw = gw
	srv, err := sip.New(sc, sip.Options{Logger: log.With("component", "sip"), Handler: gw})
	if err != nil {
		t.Fatalf("sip: %v", err)
	}
	e.srv = srv
	gw.Attach(srv)
	if err := srv.Start(context.Background()); err != nil {
		t.Fatalf("sip start: %v", err)
	}
	if o.page != "" {
		mux := http.NewServeMux()
		mux.HandleFunc("/page.html", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			fmt.Fprint(w, o.page)
		})
		api := wsapi.New(wsapi.Config{Handler: mux}, e.core, log)
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- api.Serve(ctx, ln) }()
		e.base = "http://" + ln.Addr().String()
		e.stopAPI = func() { cancel(); <-done }
	}
	t.Cleanup(e.close)
	return e
}

func (e *env) close() { e.once.Do(e.doClose) }

func (e *env) doClose() {
	if e.stopAPI != nil {
		e.stopAPI()
	}
	e.gw.Drain()
	e.core.Close()
	e.gw.Close()
	_ = e.srv.Close()
	if e.be != nil {
		e.be.Close()
	}
	for _, f := range e.closeBackends {
		f()
	}
	if e.eng != nil {
		_ = e.eng.Close()
	}
}

// sippRun is the outcome of a SIPp run started with startSIPp.
type sippRun struct {
	res *peers.SIPpResult
	err error
}

// startSIPp runs SIPp in the background; its outcome arrives on the returned channel.
func startSIPp(ctx context.Context, t testing.TB, o peers.SIPpOptions) <-chan sippRun {
	done := make(chan sippRun, 1)
	go func() {
		res, err := peers.RunSIPp(ctx, t, o)
		done <- sippRun{res, err}
	}()
	return done
}

// check fails unless SIPp ran and completed calls calls.
func (r sippRun) check(t testing.TB, calls int) {
	t.Helper()
	if r.err != nil {
		t.Fatal(r.err)
	}
	if r.res.ExitCode != 0 || r.res.Stats.SuccessfulCalls != calls {
		t.Fatalf("sipp: exit %d stats %+v\n%s\n%s", r.res.ExitCode, r.res.Stats, r.res.Errors, r.res.Output)
	}
}

// scenario is a SIPp scenario of testdata/sipp.
func scenario(t testing.TB, name string) string {
	return filepath.Join(peers.RepoRoot(t), "testdata", "sipp", name)
}

// trunkLoopback lets unauthenticated INVITEs from 127.0.0.1 in (a trunk).
func trunkLoopback(c *sip.Config) {
	c.Trunks = append(c.Trunks, sip.Trunk{Name: "loopback", Networks: []string{"127.0.0.1/32"}})
}

// recorder collects bus events.
type recorder struct {
	mu  sync.Mutex
	evs []signaling.Event
	ch  chan struct{}
}

func newRecorder(core *signaling.Core, sub signaling.Subscription) *recorder {
	r := &recorder{ch: make(chan struct{}, 1)}
	core.Bus().Subscribe(r, sub)
	return r
}

func (r *recorder) Deliver(ev signaling.Event) {
	r.mu.Lock()
	r.evs = append(r.evs, ev)
	r.mu.Unlock()
	select {
	case r.ch <- struct{}{}:
	default:
	}
}

// wait returns the first event of type typ (and obj_id, when not empty).
func (r *recorder) wait(t testing.TB, ctx context.Context, typ, obj string) signaling.Event {
	t.Helper()
	for {
		r.mu.Lock()
		for _, ev := range r.evs {
			if ev.Type == typ && (obj == "" || ev.ObjID == obj) {
				r.mu.Unlock()
				return ev
			}
		}
		r.mu.Unlock()
		select {
		case <-r.ch:
		case <-ctx.Done():
			r.mu.Lock()
			defer r.mu.Unlock()
			t.Fatalf("no %s event for %q; got %+v", typ, obj, r.evs)
		}
	}
}

// waitLimit bounds the conditions the tests poll with peers.WaitFor (each
// returns as soon as its condition holds).
const waitLimit = 20 * time.Second
