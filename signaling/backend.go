package signaling

import (
	"context"
	"sort"
	"sync"
)

// Session types the API knows. p2p needs no backend; the others need one.
const (
	TypeP2P     = "p2p"
	TypeEcho    = "echo"
	TypeProxy   = "proxy"
	TypePublish = "publish"
	TypeListen  = "listen"
	TypePark    = "park"
	TypeMCU     = "mcu"
	TypeBridge  = "bridge"
)

// KnownSessionType reports whether typ is a session type of the API (a
// known type without a backend answers 2001, an unknown one 2002).
func KnownSessionType(typ string) bool {
	switch typ {
	case TypeP2P, TypeEcho, TypeProxy, TypePublish, TypeListen, TypePark, TypeMCU, TypeBridge, TypeBot:
		return true
	}
	return false
}

// Backend provides the media of sessions of the types it was registered for
// (the embedded media engine, FreeSWITCH, ...).
type Backend interface {
	// StartMedia creates the media for a new session. It may take a while
	// (the API acknowledges the request meanwhile); ctx is cancelled if the
	// requester goes away. The returned Media is owned by the session.
	StartMedia(ctx context.Context, req MediaRequest) (Media, MediaResult, error)
}

// MediaRequest describes the session whose media a Backend must start.
type MediaRequest struct {
	SessionID string
	Type      string
	Offer     Desc           // may be nil (e.g. listen)
	Answer    Desc           // may be nil
	Peer      string         // linked session id, if any
	User      string         // the user who started the session (room info), if known
	Options   map[string]any // the raw start request data (room_id, publisher_id, proxy_type, ...)
	// Reporter is how the media tells the session about its life; it is
	// valid for the whole life of the Media.
	Reporter MediaReporter
}

// MediaResult is what StartMedia produced: an answer for the client's offer
// and/or an offer for the far side, and the room used, if any.
type MediaResult struct {
	Answer Desc
	Offer  Desc
	RoomID string
}

// Media is the media side of one session.
type Media interface {
	// SetAnswer takes the far side's answer (after StartMedia returned an
	// offer) and returns the answer for the client, if there is one.
	SetAnswer(ctx context.Context, answer Desc) (Desc, error)
	// Update changes the session live: kind is UpdateMedia, UpdateListenSwitch,
	// UpdateSessionType, UpdateMCULayout or a backend-specific one; opts is the raw
	// request data. A non-nil result is merged into the updated_type event
	// (for "session_type") or returned to the client.
	Update(ctx context.Context, kind string, opts map[string]any) (map[string]any, error)
	// Candidate takes one trickled ICE candidate, or the end of them
	// (c.End). Backends without trickle support may ignore it.
	Candidate(ctx context.Context, c Candidate) error
	// Stop releases the media. It is called exactly once, never from within
	// a MediaReporter call, and must not block for long.
	Stop(reason *Error)
}

// Candidate is one trickled ICE candidate (or the end-of-candidates mark).
type Candidate struct {
	MID        string `json:"sdpMid,omitempty"`
	MLineIndex int    `json:"sdpMLineIndex"`
	Candidate  string `json:"candidate,omitempty"`
	End        bool   `json:"-"`
}

// MediaReporter lets a Media tell its session what happened to it. It is
// implemented by the session registry; calls never block.
type MediaReporter interface {
	// Stopped says the media died; the session stops with err (and the Media's
	// Stop is then called).
	Stopped(err *Error)
	// Event publishes media/session/<evType> for the session with body
	// (e.g. "info" {info: ...}).
	Event(evType string, body map[string]any)
}

type backendEntry struct {
	name  string
	b     Backend
	types map[string]bool
}

// Backends maps session types to backends. The backend for a type is the
// one configured as its default, else the first registered for the type;
// a request may force one by name.
type Backends struct {
	mu       sync.RWMutex
	byName   map[string]*backendEntry
	order    []string
	defaults map[string]string
	rooms    []roomEntry
	adapter  OfferAdapter // adapt.go
}

// NewBackends returns an empty registry.
func NewBackends() *Backends {
	return &Backends{byName: make(map[string]*backendEntry), defaults: make(map[string]string)}
}

// Register adds (or replaces) backend name for the given session types.
func (r *Backends) Register(name string, b Backend, types ...string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	e := &backendEntry{name: name, b: b, types: make(map[string]bool, len(types))}
	for _, t := range types {
		e.types[t] = true
	}
	if _, ok := r.byName[name]; !ok {
		r.order = append(r.order, name)
	}
	r.byName[name] = e
}

// SetDefault makes backend name the one used for session type typ.
func (r *Backends) SetDefault(typ, name string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.defaults[typ] = name
}

// Names returns the registered backend names, sorted.
func (r *Backends) Names() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	n := append([]string(nil), r.order...)
	sort.Strings(n)
	return n
}

// Lookup finds the backend for a session type, or the forced one. Errors:
// 2001 when the type is known (or served by another backend) but no usable
// backend is there, 2002 when nobody knows the type.
func (r *Backends) Lookup(typ, forced string) (string, Backend, error) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if forced != "" {
		e, ok := r.byName[forced]
		if !ok {
			return "", nil, Errorf(CodeNoMediaserver, "No such backend: %s", forced)
		}
		if !e.types[typ] {
			if !KnownSessionType(typ) && !r.anyLocked(typ) {
				return "", nil, Errorf(CodeUnknownSessionType, "Unknown session type: %s", typ)
			}
			return "", nil, Errorf(CodeNoMediaserver, "Backend %s does not serve session type %s", forced, typ)
		}
		return e.name, e.b, nil
	}
	if name, ok := r.defaults[typ]; ok {
		if e, ok := r.byName[name]; ok && e.types[typ] {
			return e.name, e.b, nil
		}
		return "", nil, Errorf(CodeNoMediaserver, "Backend %s for session type %s is not available", name, typ)
	}
	for _, name := range r.order {
		if e := r.byName[name]; e.types[typ] {
			return e.name, e.b, nil
		}
	}
	if KnownSessionType(typ) {
		return "", nil, Errorf(CodeNoMediaserver, "No media server for session type: %s", typ)
	}
	return "", nil, Errorf(CodeUnknownSessionType, "Unknown session type: %s", typ)
}

func (r *Backends) anyLocked(typ string) bool {
	for _, e := range r.byName {
		if e.types[typ] {
			return true
		}
	}
	return false
}
