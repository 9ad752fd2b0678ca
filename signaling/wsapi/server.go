// Package wsapi is the WebSocket front end of the control API (the NkMEDIA
// External Interface): framing, login, keepalive, the core and media
// commands, and the API connections as call targets of types user and session.
// docs/API.md is the reference of what it implements.
package wsapi

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	"github.com/nkbridge/nkbridge/internal/defaults"
	"github.com/nkbridge/nkbridge/internal/wsutil"
	"github.com/nkbridge/nkbridge/signaling"
	"github.com/nkbridge/nkbridge/signaling/auth"
)

// Config configures the API server. Zero values take the defaults: those of the api: keys
// from internal/defaults (defaults.yaml), the others as commented.
type Config struct {
	Listen         string        // api.listen
	TLSCert        string        // with TLSKey: serve wss
	TLSKey         string        //
	MaxFrameBytes  int64         // api.max_frame_bytes
	PingInterval   time.Duration // api.ping_interval
	IdleTimeout    time.Duration // api.idle_timeout
	LoginTimeout   time.Duration // api.login_timeout: close connections that do not log in
	RequestTimeout time.Duration // api.request_timeout: answer deadline of server requests
	AckTimeout     time.Duration // api.ack_timeout: deadline after a client ack
	MaxConnections int           // api.max_connections
	AllowedOrigins []string      // extra allowed browser Origins ("*" = any)
	Users          *auth.Users   // nil or empty: open logins, loopback only
	// Admins are login names with the admin role besides the users marked
	// admin in Users (with users configured, a name still needs its
	// password); mostly for open mode (no users) on loopback.
	Admins       []string
	LoginBackoff time.Duration // default 100 ms, doubled per failure
	MaxBackoff   time.Duration // default 30 s
	RequestRate  float64       // api.request_rate: requests/s per connection (burst 2x)
	MaxOwned     int           // api.max_owned: sessions (and as many calls) per connection
	// MaxInFlight bounds the requests of one connection being processed at
	// once (api.max_in_flight); further requests wait for one to finish (the
	// reader stops reading meanwhile) for up to InFlightWait (default: half
	// of RequestTimeout), then answer 1045.
	MaxInFlight  int
	InFlightWait time.Duration
	// SendQueueBytes is the budget of frames queued for one client
	// (api.send_queue_bytes): replies wait for room (back pressure), events beyond it close
	// the connection (the client does not read).
	SendQueueBytes int
	// SubscriptionBytes is the budget of one connection's subscription
	// bodies (api.subscription_bytes); MaxSubscriptions bounds their
	// number (api.max_subscriptions).
	SubscriptionBytes int
	MaxSubscriptions  int
	// Quotas per user and per source address, and unauthenticated sockets
	// (0 = the default; negative = no limit).
	MaxUserSessions   int // api.max_user_sessions
	MaxSourceSessions int // api.max_source_sessions
	MaxUserCalls      int // api.max_user_calls
	MaxSourceCalls    int // api.max_source_calls
	MaxUserRooms      int // api.max_user_rooms
	MaxSourceRooms    int // api.max_source_rooms
	// MaxUnauthPerSource bounds the connections of one source address that
	// have not logged in yet (api.max_unauth_per_source); more get HTTP 503.
	MaxUnauthPerSource int
	// MaxLoginsPerSource bounds the password checks in progress for one
	// source address (api.max_logins_per_source); MaxLogins for all
	// (api.max_logins).
	// Further logins wait; a source or user locked out after failures is
	// answered 1030 without any password check.
	MaxLoginsPerSource int
	MaxLogins          int
	Observer           Observer // optional: told about connections and error replies (metrics)
	// Handler, if set, serves the HTTP requests that are not API upgrades
	// (any path but "/" and "/api", and plain GETs of "/"): the demo page.
	Handler http.Handler
}

// Observer is told about API connections and error replies, for metrics.
// Methods must be quick and must not block.
type Observer interface {
	APIConnOpened()
	APIConnClosed()
	// APIError: a request was answered with an error of this code.
	APIError(code int)
}

func (c *Config) defaults() {
	if c.Listen == "" {
		c.Listen = defaults.String("api.listen")
	}
	if c.MaxFrameBytes <= 0 {
		c.MaxFrameBytes = int64(defaults.Int("api.max_frame_bytes"))
	}
	if c.PingInterval <= 0 {
		c.PingInterval = defaults.Duration("api.ping_interval")
	}
	if c.IdleTimeout <= 0 {
		c.IdleTimeout = defaults.Duration("api.idle_timeout")
	}
	if c.LoginTimeout <= 0 {
		c.LoginTimeout = defaults.Duration("api.login_timeout")
	}
	if c.RequestTimeout <= 0 {
		c.RequestTimeout = defaults.Duration("api.request_timeout")
	}
	if c.AckTimeout <= 0 {
		c.AckTimeout = defaults.Duration("api.ack_timeout")
	}
	if c.MaxConnections <= 0 {
		c.MaxConnections = defaults.Int("api.max_connections")
	}
	if c.LoginBackoff <= 0 {
		c.LoginBackoff = 100 * time.Millisecond
	}
	if c.MaxBackoff <= 0 {
		c.MaxBackoff = 30 * time.Second
	}
	if c.RequestRate <= 0 {
		c.RequestRate = defaults.Float("api.request_rate")
	}
	if c.MaxOwned <= 0 {
		c.MaxOwned = defaults.Int("api.max_owned")
	}
	if c.InFlightWait <= 0 {
		// Half the answer deadline of server requests: a reader that
		// waits for a slot must still read the client's answers in time.
		c.InFlightWait = c.RequestTimeout / 2
	}
	for key, v := range map[string]*int{
		"max_in_flight": &c.MaxInFlight, "send_queue_bytes": &c.SendQueueBytes,
		"subscription_bytes": &c.SubscriptionBytes, "max_subscriptions": &c.MaxSubscriptions,
	} {
		if *v <= 0 {
			*v = defaults.Int("api." + key)
		}
	}
	for key, v := range map[string]*int{
		"max_user_sessions": &c.MaxUserSessions, "max_source_sessions": &c.MaxSourceSessions,
		"max_user_calls": &c.MaxUserCalls, "max_source_calls": &c.MaxSourceCalls,
		"max_user_rooms": &c.MaxUserRooms, "max_source_rooms": &c.MaxSourceRooms,
		"max_unauth_per_source": &c.MaxUnauthPerSource,
		"max_logins_per_source": &c.MaxLoginsPerSource, "max_logins": &c.MaxLogins,
	} {
		setDefault(v, defaults.Int("api."+key))
	}
}

// setDefault sets a zero limit to def (a negative one means none).
func setDefault(v *int, def int) {
	if *v == 0 {
		*v = def
	}
}

// Server serves the control API over WebSocket.
type Server struct {
	cfg      Config
	core     *signaling.Core
	log      *slog.Logger
	upgrader websocket.Upgrader
	open     bool // no users: any login accepted (loopback only)

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	cmds   map[string]command // the command table
	rooms  roomRegistry
	quotas quotas
	logins *wsutil.LoginGuard

	mu        sync.Mutex
	conns     map[*conn]struct{}
	byID      map[string]*conn
	byUser    map[string]map[*conn]struct{}
	bySession map[string]*conn
	unauth    map[string]int // source address -> connections not logged in
	nextConn  uint64
	httpSrv   *http.Server
	closed    bool
	draining  bool
}

// New returns a server using core. It registers the "user" and "session"
// call resolvers on core.
func New(cfg Config, core *signaling.Core, log *slog.Logger) *Server {
	cfg.defaults()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{
		cfg: cfg, core: core, log: log, open: cfg.Users.Empty(),
		ctx: ctx, cancel: cancel,
		conns: make(map[*conn]struct{}), byID: make(map[string]*conn),
		byUser: make(map[string]map[*conn]struct{}), bySession: make(map[string]*conn), unauth: make(map[string]int),
		cmds: commandTable(),
	}
	s.quotas.srv = s
	s.logins = wsutil.NewLoginGuard(wsutil.LoginGuardConfig{Backoff: cfg.LoginBackoff, MaxBackoff: cfg.MaxBackoff,
		PerSource: cfg.MaxLoginsPerSource, Global: cfg.MaxLogins})
	s.upgrader = websocket.Upgrader{
		HandshakeTimeout: 10 * time.Second,
		ReadBufferSize:   1024,
		WriteBufferSize:  4096,
		WriteBufferPool:  &sync.Pool{},
		CheckOrigin:      s.checkOrigin,
	}
	core.AddResolver(signaling.CallTypeUser, signaling.ResolverFunc(s.resolveUser))
	core.AddResolver(signaling.CallTypeSession, signaling.ResolverFunc(s.resolveSession))
	core.SetCommandRunner(s.runForwarded)
	return s
}

// CheckListen refuses a non-loopback address when no users are configured.
func CheckListen(addr string, users *auth.Users) error {
	return wsutil.CheckListen("api", addr, users.Empty())
}

// Listen binds the configured address (checking CheckListen).
func (s *Server) Listen() (net.Listener, error) {
	if err := CheckListen(s.cfg.Listen, s.cfg.Users); err != nil {
		return nil, err
	}
	return net.Listen("tcp", s.cfg.Listen)
}

// Serve serves the API on ln until ctx is cancelled or Close is called, then
// stops gracefully: every connection is closed and everything it owns
// stopped. A non-loopback listener without users is refused.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	if err := CheckListen(ln.Addr().String(), s.cfg.Users); err != nil {
		ln.Close()
		return err
	}
	if err := wsutil.CheckOrigins("api.allowed_origins", s.cfg.AllowedOrigins, s.open); err != nil {
		ln.Close()
		return err
	}
	if s.open {
		s.log.Warn("NO USERS CONFIGURED: the API accepts ANY login (allowed because it listens on loopback only)", "listen", ln.Addr().String())
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/", s.ServeHTTP)
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelDebug)}
	if s.cfg.TLSCert != "" {
		cert, err := tls.LoadX509KeyPair(s.cfg.TLSCert, s.cfg.TLSKey)
		if err != nil {
			ln.Close()
			return fmt.Errorf("api tls: %w", err)
		}
		hs.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
		ln = tls.NewListener(ln, hs.TLSConfig)
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		ln.Close()
		return errors.New("server closed")
	}
	s.httpSrv = hs
	s.mu.Unlock()
	s.log.Info("api listening", "addr", ln.Addr().String(), "tls", s.cfg.TLSCert != "")
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	select {
	case <-ctx.Done():
	case <-s.ctx.Done():
	case err := <-errc:
		s.mu.Lock()
		draining := s.draining
		s.mu.Unlock()
		if !draining {
			s.Close()
			return err
		}
		// Drain closed the listener; connections go on until the end.
		errc <- nil
		select {
		case <-ctx.Done():
		case <-s.ctx.Done():
		}
	}
	s.Close()
	<-errc
	return nil
}

// Drain stops accepting connections; open connections go on until Close
// (or Serve's context) ends them.
func (s *Server) Drain() {
	s.mu.Lock()
	s.draining = true
	hs := s.httpSrv
	s.mu.Unlock()
	if hs != nil {
		_ = hs.Close()
	}
	s.log.Info("api draining: no new connections")
}

// Close stops the server: closes the listener and every connection (1001),
// waits for their goroutines and for the sessions they owned to stop.
func (s *Server) Close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		s.wg.Wait()
		return
	}
	s.closed = true
	hs := s.httpSrv
	conns := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	s.cancel()
	if hs != nil {
		_ = hs.Close()
	}
	for _, c := range conns {
		c.closeWith(websocket.CloseGoingAway, "Server stopping")
	}
	s.wg.Wait()
	s.log.Info("api stopped")
}

// ServeHTTP upgrades API requests (paths "/" and "/api"); other requests
// go to Config.Handler when there is one.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	api := r.URL.Path == "/api" || (r.URL.Path == "/" && websocket.IsWebSocketUpgrade(r))
	if !api && s.cfg.Handler != nil {
		s.cfg.Handler.ServeHTTP(w, r)
		return
	}
	if r.URL.Path != "/" && r.URL.Path != "/api" {
		http.NotFound(w, r)
		return
	}
	if s.open && !wsutil.LoopbackHost(r) {
		// Anonymous logins: only for this machine, never for a page whose
		// domain resolves to 127.0.0.1 (DNS rebinding).
		s.log.Warn("api upgrade refused: Host is not loopback and no users are configured", "host", r.Host, "remote", r.RemoteAddr)
		http.Error(w, "forbidden Host (no users configured: loopback names only)", http.StatusForbidden)
		return
	}
	if !s.checkOrigin(r) && websocket.IsWebSocketUpgrade(r) {
		// A page on another origin: tell it which setting lets it in (a close reason is
		// the only text a browser shows of a refusal).
		s.log.Warn("api upgrade refused: Origin not allowed (api.allowed_origins)", "origin", r.Header.Get("Origin"), "remote", r.RemoteAddr)
		wsutil.RefuseOrigin(w, r, "api.allowed_origins", nil)
		return
	}
	src := sourceOf(r.RemoteAddr)
	s.mu.Lock()
	full := len(s.conns) >= s.cfg.MaxConnections
	closed := s.closed || s.draining
	unauth := s.cfg.MaxUnauthPerSource > 0 && s.unauth[src] >= s.cfg.MaxUnauthPerSource
	if !closed && !full && !unauth {
		s.unauth[src]++ // reserved before the upgrade: the new connection is not logged in
	}
	s.mu.Unlock()
	if closed || full || unauth {
		if unauth {
			s.log.Warn("api upgrade refused: too many connections not logged in from this address (api.max_unauth_per_source)", "remote", r.RemoteAddr)
		}
		http.Error(w, "too many connections", http.StatusServiceUnavailable)
		return
	}
	ws, err := s.upgrader.Upgrade(w, r, nil)
	var c *conn
	if err == nil {
		c = s.newConn(ws, r.RemoteAddr)
	}
	if c == nil {
		if err != nil {
			s.log.Debug("api upgrade failed", "remote", r.RemoteAddr, "err", err)
		} else {
			ws.Close()
		}
		s.mu.Lock()
		if s.unauth[src]--; s.unauth[src] <= 0 {
			delete(s.unauth, src)
		}
		s.mu.Unlock()
		return
	}
	go c.readLoop()
	go c.writeLoop()
}

// checkOrigin accepts requests without Origin, same-origin requests and configured origins.
func (s *Server) checkOrigin(r *http.Request) bool {
	return wsutil.OriginAllowed(r, s.cfg.AllowedOrigins)
}

func (s *Server) newConn(ws *websocket.Conn, remote string) *conn {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	// Added under s.mu with the closed check: Close's Wait sees the
	// connection's read and write loops (a later Add could miss it).
	s.wg.Add(2)
	s.nextConn++
	c := newConn(s, ws, remote, fmt.Sprintf("api-%d", s.nextConn))
	s.conns[c] = struct{}{}
	c.unauthCounted = true // reserved by ServeHTTP
	s.byID[c.id] = c
	if s.cfg.Observer != nil {
		s.cfg.Observer.APIConnOpened()
	}
	return c
}

func (s *Server) removeConn(c *conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.conns[c]; ok && s.cfg.Observer != nil {
		s.cfg.Observer.APIConnClosed()
	}
	s.leaveUnauthLocked(c)
	delete(s.conns, c)
	delete(s.byID, c.id)
	if c.user != "" {
		if m := s.byUser[c.user]; m != nil {
			delete(m, c)
			if len(m) == 0 {
				delete(s.byUser, c.user)
			}
		}
	}
	if c.loginID != "" && s.bySession[c.loginID] == c {
		delete(s.bySession, c.loginID)
		// Under s.mu: a login registered under it too, so its Add came first.
		s.core.Presence().Remove(signaling.ContactAPI, c.loginID)
	}
}

// registerLogin records a logged-in connection; false if the session id is taken.
func (s *Server) registerLogin(c *conn, user, sid string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, dup := s.bySession[sid]; dup {
		return false
	}
	if _, live := s.conns[c]; !live {
		return false
	}
	s.bySession[sid] = c
	s.leaveUnauthLocked(c)
	m := s.byUser[user]
	if m == nil {
		m = make(map[*conn]struct{})
		s.byUser[user] = m
	}
	m[c] = struct{}{}
	info := map[string]any{"remote": c.remote}
	c.mu.Lock()
	if c.meta != nil {
		info["meta"] = c.meta
	}
	c.mu.Unlock()
	s.core.Presence().Add(signaling.Contact{User: user, Kind: signaling.ContactAPI, ID: sid, Info: info})
	return true
}

// leaveUnauthLocked stops counting c among its source's connections not
// logged in (once).
func (s *Server) leaveUnauthLocked(c *conn) {
	if !c.unauthCounted {
		return
	}
	c.unauthCounted = false
	if s.unauth[c.source]--; s.unauth[c.source] <= 0 {
		delete(s.unauth, c.source)
	}
}

func (s *Server) sessionTaken(sid string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, dup := s.bySession[sid]
	return dup
}

// ConnCount returns the number of open API connections.
func (s *Server) ConnCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

func (s *Server) resolveUser(_ context.Context, dest signaling.Destination) ([]signaling.Invitee, error) {
	if dest.Type != "" && dest.Type != "user" {
		return nil, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []signaling.Invitee
	for c := range s.byUser[dest.Callee] {
		if c.id != dest.Caller.Owner {
			out = append(out, &invitee{c: c})
		}
	}
	return out, nil
}

func (s *Server) resolveSession(_ context.Context, dest signaling.Destination) ([]signaling.Invitee, error) {
	if dest.Type != "" && dest.Type != signaling.CallTypeSession {
		return nil, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if c, ok := s.bySession[dest.Callee]; ok && c.id != dest.Caller.Owner {
		return []signaling.Invitee{&invitee{c: c}}, nil
	}
	return nil, nil
}

// connUser returns the user of the connection with the given key.
func (s *Server) connUser(id string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c, ok := s.byID[id]; ok {
		return c.user
	}
	return ""
}
