package main

import (
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	nkclient "github.com/nkbridge/nkbridge/client"
	"github.com/nkbridge/nkbridge/internal/defaults"
	"github.com/nkbridge/nkbridge/internal/peers"
)

const (
	debBin    = "/usr/bin/nkbridge"
	debUnit   = "/lib/systemd/system/nkbridge.service"
	debConfig = "/etc/nkbridge/nkbridge.yaml"
)

// The Debian package built by deploy/build-deb.sh (nfpm through go run)
// installs into this machine with dpkg -i: the binary, the systemd unit
// (systemd-analyze verify accepts it), /etc/nkbridge/nkbridge.yaml as a
// conffile readable by group nkbridge only, and the system user nkbridge.
// The installed binary, as that user, accepts the installed config
// (-check-config, the unit's ExecStartPre) and serves with it: /health
// answers 200 and the API takes a login. dpkg --purge then leaves no file,
// user or group behind. Needs root (dpkg); skips without unless
// NKB_REQUIRE_PEERS=1.
func TestDebianPackage(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and installs a package")
	}
	if os.Geteuid() != 0 {
		peers.Missing(t, "root, to install a .deb with dpkg")
	}
	dpkg := peers.Need(t, "dpkg")
	analyze := peers.Need(t, "systemd-analyze")
	// One package test at a time on this machine (several checkouts may run
	// the suite at once).
	lock, err := os.OpenFile(filepath.Join(os.TempDir(), "nkbridge-deb-test.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lock.Close() }) // after the purge below (cleanups run last first)
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	if debInstalled(t) {
		t.Fatal("an nkbridge package is already installed on this machine: not touching it")
	}
	if _, err := user.Lookup("nkbridge"); err == nil {
		t.Fatal("a user nkbridge exists but no nkbridge package: not touching it")
	}

	out, err := exec.Command(filepath.Join(peers.RepoRoot(t), "deploy", "build-deb.sh"), t.TempDir()).Output()
	if err != nil {
		t.Fatalf("deploy/build-deb.sh: %v\n%s", err, stderrOf(err))
	}
	deb := strings.TrimSpace(string(out))
	if !strings.HasSuffix(deb, ".deb") {
		t.Fatalf("build-deb.sh printed %q", deb)
	}
	purged := false
	t.Cleanup(func() {
		if !purged {
			_ = exec.Command(dpkg, "--purge", "nkbridge").Run()
		}
	})
	if out, err := exec.Command(dpkg, "-i", deb).CombinedOutput(); err != nil {
		t.Fatalf("dpkg -i: %v\n%s", err, out)
	}

	// What is installed.
	if !debInstalled(t) {
		t.Fatal("dpkg -i succeeded but the package is not installed")
	}
	if out, _ := exec.Command("dpkg-query", "-W", "-f=${Conffiles}", "nkbridge").Output(); !strings.Contains(string(out), debConfig) {
		t.Errorf("conffiles: %q", out)
	}
	u, err := user.Lookup("nkbridge")
	if err != nil {
		t.Fatalf("no user nkbridge after install: %v", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	if uid == 0 || uid >= 1000 {
		t.Errorf("nkbridge uid %d is not a system user's", uid)
	}
	if g, err := user.LookupGroupId(u.Gid); err != nil || g.Name != "nkbridge" {
		t.Errorf("primary group %v %v", g, err)
	}
	for path, want := range map[string]struct {
		mode os.FileMode
		gid  int
	}{debBin: {0o755, 0}, debUnit: {0o644, 0}, debConfig: {0o640, gid}, "/etc/nkbridge": {0o750 | os.ModeDir, gid}} {
		st, err := os.Stat(path)
		if err != nil {
			t.Errorf("%s: %v", path, err)
			continue
		}
		sys := st.Sys().(*syscall.Stat_t)
		if st.Mode() != want.mode || sys.Uid != 0 || int(sys.Gid) != want.gid {
			t.Errorf("%s: mode %v owner %d:%d, want %v 0:%d", path, st.Mode(), sys.Uid, sys.Gid, want.mode, want.gid)
		}
	}
	if b, err := os.ReadFile(debConfig); err != nil || string(b) != defaults.YAML() {
		t.Errorf("%s is not the embedded defaults: %v", debConfig, err)
	}
	unit, err := os.ReadFile(debUnit)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(unit), "/usr/local/") || !strings.Contains(string(unit), "ExecStart="+debBin+" -config "+debConfig) {
		t.Errorf("installed unit does not run %s -config %s:\n%s", debBin, debConfig, unit)
	}
	if out, err := exec.Command(analyze, "verify", debUnit).CombinedOutput(); err != nil || len(strings.TrimSpace(string(out))) != 0 {
		t.Errorf("systemd-analyze verify %s: %v\n%s", debUnit, err, out)
	}

	// The unit's ExecStartPre, as the unit's user.
	asNkbridge := &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
	check := exec.Command(debBin, "-config", debConfig, "-check-config")
	check.SysProcAttr = asNkbridge
	if out, err := check.CombinedOutput(); err != nil {
		t.Fatalf("%s -check-config as nkbridge: %v\n%s", debBin, err, out)
	}
	// Other users cannot read the config.
	if nobody, err := user.Lookup("nobody"); err == nil {
		nuid, _ := strconv.Atoi(nobody.Uid)
		ngid, _ := strconv.Atoi(nobody.Gid)
		c := exec.Command(debBin, "-config", debConfig, "-check-config")
		c.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(nuid), Gid: uint32(ngid)}}
		if out, err := c.CombinedOutput(); err == nil || !strings.Contains(string(out), "permission denied") {
			t.Errorf("user nobody read %s: %v\n%s", debConfig, err, out)
		}
	}

	// Serve with the installed config, as nkbridge, on loopback (free ports,
	// so that a daemon of another test or a developer's is not disturbed).
	cmd := exec.Command(debBin, "-config", debConfig, "-log-format", "json", "-api-listen", "127.0.0.1:0", "-metrics-listen", "127.0.0.1:0")
	cmd.Env = append(os.Environ(), testPortsEnv...)
	cmd.Dir = "/"
	cmd.SysProcAttr = asNkbridge
	d := startCommand(t, cmd)
	if code, status := d.health(); code != 200 || status != "ok" {
		t.Fatalf("/health = %d %s", code, status)
	}
	d.client("alice", nkclient.Options{}).Close() // the API takes a login
	_ = d.cmd.Process.Signal(syscall.SIGTERM)     // drains: nothing left, exits at once
	d.waitExit(10 * time.Second)

	// Purge leaves the machine as it was.
	if out, err := exec.Command(dpkg, "--purge", "nkbridge").CombinedOutput(); err != nil {
		t.Fatalf("dpkg --purge: %v\n%s", err, out)
	}
	purged = true
	if debInstalled(t) {
		t.Error("still installed after purge")
	}
	for _, path := range []string{debBin, debUnit, "/etc/nkbridge", "/var/lib/nkbridge", "/usr/share/doc/nkbridge"} {
		if _, err := os.Lstat(path); !os.IsNotExist(err) {
			t.Errorf("%s left after purge (%v)", path, err)
		}
	}
	if _, err := user.Lookup("nkbridge"); err == nil {
		t.Error("user nkbridge left after purge")
	}
	if _, err := user.LookupGroup("nkbridge"); err == nil {
		t.Error("group nkbridge left after purge")
	}
}

// debInstalled reports whether dpkg has the nkbridge package (in any state
// but "not installed").
func debInstalled(t *testing.T) bool {
	t.Helper()
	out, err := exec.Command("dpkg-query", "-W", "-f=${db:Status-Status}", "nkbridge").Output()
	return err == nil && strings.TrimSpace(string(out)) != "not-installed" && len(out) > 0
}

func stderrOf(err error) string {
	if ee, ok := err.(*exec.ExitError); ok {
		return string(ee.Stderr)
	}
	return ""
}
