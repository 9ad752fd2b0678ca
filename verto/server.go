package verto

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"runtime/debug"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
	"github.com/nkbridge/nkbridge/internal/wsutil"
)

// Server is a Verto (mod_verto compatible) JSON-RPC server. Create it with New, mount
// Server (an http.Handler) or call ListenAndServe, and Close it when done.
type Server struct {
	cfg      Config
	auth     Authenticator
	handler  CallHandler
	log      *slog.Logger
	upgrader websocket.Upgrader
	nextID   atomic.Int64 // server request ids, shared by all connections (like mod_verto)

	ctx    context.Context // ends at Close
	cancel context.CancelFunc
	wg     sync.WaitGroup // one per accepted connection

	mu       sync.Mutex
	closed   bool
	active   int // ServeHTTP calls in progress (sockets, incl. upgrading)
	perIP    map[string]int
	conns    map[*conn]struct{}
	sessions map[string]*session
	calls    map[string]*Call // every live call leg by callID
	fails    map[string]*ipFails
	httpSrv  *http.Server
	logins   *wsutil.LoginGuard
}

// New makes a Server. auth and handler are required; log may be nil (discard).
func New(cfg Config, auth Authenticator, handler CallHandler, log *slog.Logger) (*Server, error) {
	if auth == nil || handler == nil {
		return nil, errors.New("verto: New needs an Authenticator and a CallHandler")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cfg = cfg.withDefaults()
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{
		cfg: cfg, auth: auth, handler: handler, log: log,
		ctx: ctx, cancel: cancel,
		conns:    make(map[*conn]struct{}),
		sessions: make(map[string]*session),
		calls:    make(map[string]*Call),
		fails:    make(map[string]*ipFails),
		perIP:    make(map[string]int),
		logins: wsutil.NewLoginGuard(wsutil.LoginGuardConfig{Backoff: cfg.LoginFailDelay,
			MaxBackoff: maxLoginFailDelay, PerSource: cfg.MaxLoginsPerIP, Global: cfg.MaxLogins}),
	}
	s.upgrader = websocket.Upgrader{
		HandshakeTimeout: 10 * time.Second,
		CheckOrigin:      s.checkOrigin,
	}
	return s, nil
}

// checkOrigin accepts requests without Origin, same-origin requests and configured origins.
func (s *Server) checkOrigin(r *http.Request) bool {
	return wsutil.OriginAllowed(r, s.cfg.AllowedOrigins)
}

// ServeHTTP upgrades the request (any path) to a Verto WebSocket and serves it until it closes.
// It echoes a requested subprotocol like libks does.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if s.cfg.LoopbackHostOnly && !wsutil.LoopbackHost(r) {
		s.log.Warn("verto: upgrade refused: Host is not loopback and logins are anonymous", "host", r.Host, "remote", r.RemoteAddr)
		http.Error(w, "forbidden Host (no users configured: loopback names only)", http.StatusForbidden)
		return
	}
	if !s.checkOrigin(r) && websocket.IsWebSocketUpgrade(r) {
		// A Verto page on another origin: the close reason names the setting that lets it in.
		s.log.Warn("verto: upgrade refused: Origin not allowed (verto.allowed_origins)", "origin", r.Header.Get("Origin"), "remote", r.RemoteAddr)
		var hdr http.Header
		if protos := websocket.Subprotocols(r); len(protos) > 0 {
			hdr = http.Header{"Sec-Websocket-Protocol": {protos[0]}}
		}
		wsutil.RefuseOrigin(w, r, "verto.allowed_origins", hdr)
		return
	}
	ip := remoteIP(r.RemoteAddr)
	s.mu.Lock()
	if s.closed || s.active >= s.cfg.MaxConnections || s.perIP[ip] >= s.cfg.MaxConnectionsPerIP {
		s.mu.Unlock()
		http.Error(w, "verto server closed or full", http.StatusServiceUnavailable)
		return
	}
	s.active++
	s.perIP[ip]++
	s.wg.Add(1)
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.active--
		if s.perIP[ip]--; s.perIP[ip] <= 0 {
			delete(s.perIP, ip)
		}
		s.mu.Unlock()
		s.wg.Done()
	}()

	var hdr http.Header
	if protos := websocket.Subprotocols(r); len(protos) > 0 {
		hdr = http.Header{"Sec-Websocket-Protocol": {protos[0]}}
	}
	ws, err := s.upgrader.Upgrade(w, r, hdr)
	if err != nil {
		s.log.Debug("verto: upgrade failed", "remote", r.RemoteAddr, "err", err)
		return
	}
	c := newConn(s, ws, r.RemoteAddr)
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		_ = ws.Close()
		return
	}
	s.conns[c] = struct{}{}
	s.mu.Unlock()
	c.run()
}

// ListenAndServe listens on Config.Addr (wss when a certificate is configured) and serves until
// ctx ends or Close is called. It returns nil after a clean shutdown.
func (s *Server) ListenAndServe(ctx context.Context) error {
	ln, err := net.Listen("tcp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("verto: listen %s: %w", s.cfg.Addr, err)
	}
	return s.Serve(ctx, ln)
}

// Serve serves Verto on ln (wrapping it in TLS when a certificate is configured) until ctx ends
// or Close is called.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	tlsCfg := s.cfg.TLS
	if tlsCfg == nil && s.cfg.CertFile != "" && s.cfg.KeyFile != "" {
		cert, err := tls.LoadX509KeyPair(s.cfg.CertFile, s.cfg.KeyFile)
		if err != nil {
			_ = ln.Close()
			return fmt.Errorf("verto: load certificate: %w", err)
		}
		tlsCfg = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	if tlsCfg != nil {
		ln = tls.NewListener(ln, tlsCfg)
	}
	hs := &http.Server{
		Handler:           s,
		ReadHeaderTimeout: 10 * time.Second,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		_ = ln.Close()
		return errClosed
	}
	s.httpSrv = hs
	s.mu.Unlock()
	s.log.Info("verto: listening", "addr", ln.Addr().String(), "tls", tlsCfg != nil)
	stop := context.AfterFunc(ctx, func() { s.Close() })
	defer stop()
	err := hs.Serve(ln)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// Close stops the server: every call is hung up (SYSTEM_SHUTDOWN, reported to its events),
// every socket is closed, and Close waits until all connection goroutines have ended.
func (s *Server) Close() {
	var d deferred
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		s.wg.Wait()
		return
	}
	s.closed = true
	hs := s.httpSrv
	for _, c := range s.calls {
		s.endCallLocked(c, CauseSystemShutdown, true, true, &d)
	}
	for _, sess := range s.sessions {
		if sess.grace != nil {
			sess.grace.Stop()
		}
	}
	clear(s.sessions)
	for c := range s.conns {
		c.kill(websocket.CloseGoingAway, "server shutdown")
	}
	s.mu.Unlock()
	d.run()
	s.cancel()
	if hs != nil {
		_ = hs.Close() // the listener; hijacked WebSockets are closed above
	}
	s.wg.Wait()
}

// Online reports whether user has at least one live (connected) Verto session.
func (s *Server) Online(user string) bool {
	return len(s.Sessions(user)) > 0
}

// Sessions lists the sessids of user that currently have a connected socket.
func (s *Server) Sessions(user string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for id, sess := range s.sessions {
		if sess.user == user && sess.conn != nil {
			out = append(out, id)
		}
	}
	slices.Sort(out)
	return out
}

// recovered, deferred in a timer callback, logs a panic with its stack instead of ending the
// process.
func (s *Server) recovered(what string) {
	if v := recover(); v != nil {
		s.log.Error("verto: panic recovered", "in", what, "panic", v, "stack", string(debug.Stack()))
	}
}

// deferred collects callbacks to run after s.mu is released.
type deferred []func()

func (d *deferred) add(f func()) { *d = append(*d, f) }

func (d *deferred) run() {
	for _, f := range *d {
		f()
	}
	*d = nil
}

// session is one logical Verto client (a sessid), with the socket that holds it (nil while
// detached) and its calls. Guarded by Server.mu.
type session struct {
	id, user string
	vars     map[string]string // the login's userVariables
	conn     *conn
	calls    map[string]*Call
	grace    *time.Timer
	graceGen int
}

// detachLocked unbinds the session's socket. Unanswered calls end with DESTINATION_OUT_OF_ORDER,
// answered recoverable ones are kept for the grace period, the rest end with NORMAL_CLEARING.
func (s *Server) detachLocked(sess *session, d *deferred) {
	sess.conn = nil
	if f := s.cfg.OnPresence; f != nil {
		user, id := sess.user, sess.id
		d.add(func() { f(user, id, false) })
	}
	kept := s.detachCallsLocked(sess, d)
	if kept == 0 {
		delete(s.sessions, sess.id)
		return
	}
	sess.graceGen++
	gen := sess.graceGen
	sess.grace = time.AfterFunc(s.cfg.DetachGrace, func() {
		defer s.recovered("detach grace timer")
		s.graceExpired(sess, gen)
	})
	s.log.Debug("verto: session detached", "sessid", sess.id, "user", sess.user, "calls", kept)
}

// detachCallsLocked applies the detach rules to the session's calls and returns how many were
// kept for re-attach.
func (s *Server) detachCallsLocked(sess *session, d *deferred) int {
	kept := 0
	for _, c := range sess.calls {
		switch {
		case c.state == stateRinging || c.state == stateTrying || c.state == stateEarly:
			s.endCallLocked(c, CauseDestinationOutOfOrder, false, true, d)
		case c.recoverable():
			if c.state == stateActive {
				if r, ok := c.events.(Recoverable); ok {
					d.add(r.Detached)
				}
			}
			c.state = stateDetached
			kept++
		default:
			s.endCallLocked(c, CauseNormalClearing, false, true, d)
		}
	}
	return kept
}

func (s *Server) graceExpired(sess *session, gen int) {
	var d deferred
	s.mu.Lock()
	if s.closed || sess.conn != nil || sess.graceGen != gen || s.sessions[sess.id] != sess {
		s.mu.Unlock()
		return
	}
	for _, c := range sess.calls {
		s.endCallLocked(c, CauseRecoveryOnTimerExpire, false, true, &d)
	}
	delete(s.sessions, sess.id)
	s.mu.Unlock()
	s.log.Debug("verto: detach grace expired", "sessid", sess.id)
	d.run()
}

// connClosed runs when a socket's reader ends.
func (s *Server) connClosed(c *conn) {
	var d deferred
	s.mu.Lock()
	delete(s.conns, c)
	if sess := c.sess; sess != nil && sess.conn == c && !s.closed {
		s.detachLocked(sess, &d)
	}
	s.mu.Unlock()
	d.run()
}

// ipFails counts failed logins of one remote address.
type ipFails struct {
	n     int
	first time.Time
}

const maxTrackedIPs = 4096

func remoteIP(addr string) string {
	if host, _, err := net.SplitHostPort(addr); err == nil {
		return host
	}
	return addr
}

// loginBlocked reports whether logins from ip are refused for now.
func (s *Server) loginBlocked(ip string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	f := s.fails[ip]
	if f == nil {
		return false
	}
	if time.Since(f.first) > s.cfg.LoginLockout {
		delete(s.fails, ip)
		return false
	}
	return f.n >= s.cfg.MaxLoginFailuresPerIP
}

// loginResult records a login outcome of ip.
func (s *Server) loginResult(ip string, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ok {
		delete(s.fails, ip)
		return
	}
	now := time.Now()
	f := s.fails[ip]
	if f == nil || now.Sub(f.first) > s.cfg.LoginLockout {
		if len(s.fails) >= maxTrackedIPs {
			for k, v := range s.fails {
				if now.Sub(v.first) > s.cfg.LoginLockout || len(s.fails) >= maxTrackedIPs {
					delete(s.fails, k)
				}
			}
		}
		f = &ipFails{first: now}
		s.fails[ip] = f
	}
	f.n++
}
