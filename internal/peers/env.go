package peers

import (
	"bufio"
	"bytes"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// RequireEnv is the environment variable that turns a missing real peer from a skip into a
// failure. scripts/test.sh (the CI test command) sets it to 1.
const RequireEnv = "NKB_REQUIRE_PEERS"

// Required reports whether missing real peers must fail tests (NKB_REQUIRE_PEERS=1).
func Required() bool { return os.Getenv(RequireEnv) == "1" }

// Missing skips the test, or fails it when NKB_REQUIRE_PEERS=1, because something the test
// needs is not installed. what says what and how to get it.
func Missing(t testing.TB, format string, args ...any) {
	t.Helper()
	if Required() {
		t.Fatalf("real peer missing (and %s=1): "+format, append([]any{RequireEnv}, args...)...)
	}
	t.Skipf("real peer missing (run scripts/test.sh to install): "+format, args...)
}

// Need returns the path of program (looked up in PATH, then /usr/sbin and /usr/bin), or
// skips/fails the test per NKB_REQUIRE_PEERS when it is not installed.
func Need(t testing.TB, program string) string {
	t.Helper()
	if p, err := exec.LookPath(program); err == nil {
		return p
	}
	for _, dir := range []string{"/usr/bin", "/usr/sbin", "/usr/local/bin"} {
		p := filepath.Join(dir, program)
		if st, err := os.Stat(p); err == nil && !st.IsDir() && st.Mode()&0o111 != 0 {
			return p
		}
	}
	Missing(t, "program %q not found", program)
	return ""
}

// NeedFile returns path if it exists, or skips/fails the test per NKB_REQUIRE_PEERS; hint
// says how to get it.
func NeedFile(t testing.TB, path, hint string) string {
	t.Helper()
	if _, err := os.Stat(path); err != nil {
		Missing(t, "%s not found (%s)", path, hint)
	}
	return path
}

const modulePath = "github.com/nkbridge/nkbridge"

// RepoRoot returns the repository root (the directory holding nkbridge's go.mod), found by
// walking up from the working directory (go test runs in the package directory).
func RepoRoot(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatalf("peers.RepoRoot: %v", err)
	}
	for {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && bytes.Contains(firstLine(b), []byte(modulePath)) {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatalf("peers.RepoRoot: no go.mod of %s above the working directory", modulePath)
		}
		dir = parent
	}
}

func firstLine(b []byte) []byte {
	s := bufio.NewScanner(bytes.NewReader(b))
	for s.Scan() {
		if l := strings.TrimSpace(s.Text()); l != "" && !strings.HasPrefix(l, "//") {
			return []byte(l)
		}
	}
	return nil
}

// ArtifactDir returns (creating it) test-artifacts/<test name>/ under the repository root,
// a git-ignored place for files a person may want to look at after a run (screenshots,
// recordings, logs).
func ArtifactDir(t testing.TB) string {
	t.Helper()
	name := strings.NewReplacer("/", "_", " ", "_", ":", "_").Replace(t.Name())
	dir := filepath.Join(RepoRoot(t), "test-artifacts", name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatalf("peers.ArtifactDir: %v", err)
	}
	return dir
}

// TestLogger returns a logger writing to t.Log. It goes quiet when the test's cleanups have
// run (so late output from child processes cannot log after the test completed).
func TestLogger(t testing.TB) *slog.Logger { return TestLoggerLevel(t, slog.LevelDebug) }

// TestLoggerLevel is TestLogger keeping only records at lvl and above.
func TestLoggerLevel(t testing.TB, lvl slog.Level) *slog.Logger {
	w := &tWriter{t: t}
	t.Cleanup(w.close)
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: lvl}))
}

type tWriter struct {
	mu     sync.Mutex
	t      testing.TB
	closed bool
}

func (w *tWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.closed {
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

func (w *tWriter) close() {
	w.mu.Lock()
	w.closed = true
	w.mu.Unlock()
}
