package securitytest

import (
	"strings"
	"sync"
	"testing"

	"github.com/nkbridge/nkbridge/signaling"
	"github.com/nkbridge/nkbridge/signaling/wsapi"
)

// #13.4: a flood of logins with wrong passwords from one address cannot
// make the server hash more than api.max_logins_per_source passwords at a
// time (the rest is refused before any hashing); a login from another
// address still works, and a success clears the source's failures.
func TestLoginFloodBeforeHashing(t *testing.T) {
	// The real cost: 600k PBKDF2 iterations per check.
	e := newAPIEnv(t, wsapi.Config{Users: testUsers(t, 0)}, nil)
	const n = 24
	var (
		wg              sync.WaitGroup
		mu              sync.Mutex
		hashed, refused int
		others          []string
		clients         []*client
	)
	for range n {
		c, err := dialFrom(t, e.addr, "127.0.0.2", nil)
		if err != nil {
			t.Fatal(err)
		}
		clients = append(clients, c)
	}
	for _, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := c.Call("core", "user", "login", map[string]any{"user": "alice", "password": "guess"})
			mu.Lock()
			defer mu.Unlock()
			switch {
			case codeOf(err) != signaling.CodeUnauthorized:
				others = append(others, err.Error())
			case strings.Contains(err.Error(), "too many"):
				refused++ // refused before hashing
			default:
				hashed++
			}
		}()
	}
	wg.Wait()
	if len(others) > 0 {
		t.Fatalf("unexpected answers: %v", others)
	}
	t.Logf("%d wrong logins at once: %d hashed, %d refused before hashing", n, hashed, refused)
	if hashed > 2 {
		t.Errorf("%d of %d concurrent wrong logins from one address were hashed, want at most 2 (api.max_logins_per_source)", hashed, n)
	}
	// Another address is not locked out.
	good, err := dialFrom(t, e.addr, "127.0.0.3", nil)
	if err != nil {
		t.Fatal(err)
	}
	good.OK("core", "user", "login", map[string]any{"user": "bob", "password": testPassword})
}
