package vertogw

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/nkbridge/nkbridge/internal/wsutil"
	"github.com/nkbridge/nkbridge/signaling/auth"
	"github.com/nkbridge/nkbridge/verto"
)

// Auth is the verto.Authenticator over the control API's users: the same names and
// passwords. With no users configured every login is accepted, as the API does; that is only
// allowed on a loopback listener (CheckListen) and every such login is logged as a warning.
type Auth struct {
	users *auth.Users
	open  bool
	log   *slog.Logger
	sem   chan struct{} // bounds concurrent (deliberately slow) password checks
}

// NewAuth returns an Auth over users (nil or empty: open, see CheckListen). log may be nil.
func NewAuth(users *auth.Users, log *slog.Logger) *Auth {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Auth{users: users, open: users.Empty(), log: log, sem: make(chan struct{}, 4)}
}

// Open reports whether any login is accepted (no users configured).
func (a *Auth) Open() bool { return a.open }

// errLogin is what a refused login reports (the Verto server answers -32001 for any error).
var errLogin = errors.New("vertogw: login refused")

// Authenticate checks a login and returns the user name the Verto session is bound to (the
// login without "@domain").
func (a *Auth) Authenticate(ctx context.Context, cr verto.Credentials) (string, error) {
	if !validUser(cr.User) {
		return "", fmt.Errorf("%w: invalid user name", errLogin)
	}
	if a.open {
		a.log.Warn("verto login accepted WITHOUT password check (no users configured, loopback only)", "user", cr.User)
		return cr.User, nil
	}
	select {
	case a.sem <- struct{}{}:
	case <-ctx.Done():
		return "", ctx.Err()
	}
	ok := a.users.Check(cr.User, cr.Password)
	<-a.sem
	if !ok {
		return "", errLogin
	}
	return cr.User, nil
}

// CheckListen refuses a non-loopback Verto listener when no users are configured (anonymous
// logins from the network), the rule the control API applies to its own listener.
func CheckListen(addr string, users *auth.Users) error {
	return wsutil.CheckListen("verto", addr, users.Empty())
}
