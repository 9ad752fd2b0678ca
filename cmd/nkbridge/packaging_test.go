package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/goccy/go-yaml"

	"github.com/nkbridge/nkbridge/internal/defaults"
	"github.com/nkbridge/nkbridge/signaling"
)

// buildBinary builds the daemon with the given go build arguments.
func buildBinary(t *testing.T, args ...string) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "nkbridge")
	cmd := exec.Command("go", append(append([]string{"build"}, args...), "-o", bin, ".")...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %v: %v\n%s", args, err, out)
	}
	return bin
}

// The Dockerfile's build stage command works as written (same flags), the
// binary reports its version and prints the defaults the image installs as
// its config; the runtime stage runs as a non-root user with libopus0.
func TestDockerfile(t *testing.T) {
	b, err := os.ReadFile("../../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	df := string(b)
	m := regexp.MustCompile(`RUN CGO_ENABLED=1 go build (.*?) -o /out/nkbridge \./cmd/nkbridge`).FindStringSubmatch(df)
	if m == nil {
		t.Fatal("no go build line in the Dockerfile")
	}
	args := strings.Fields(strings.ReplaceAll(m[1], `"`, ""))
	// -ldflags "-s -w" is one argument.
	for i := 0; i < len(args); i++ {
		if args[i] == "-ldflags" && i+2 < len(args) {
			args = append(args[:i+1], append([]string{args[i+1] + " " + args[i+2]}, args[i+3:]...)...)
		}
	}
	if strings.Contains(m[1], "-tags") {
		t.Error("the build needs no tags")
	}
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := buildBinary(t, args...)
	out, err := exec.Command(bin, "-version").Output()
	if err != nil || !strings.HasPrefix(string(out), "nkbridge "+version+" (go") {
		t.Fatalf("-version = %q %v", out, err)
	}
	out, err = exec.Command(bin, "-print-defaults").Output()
	if err != nil || string(out) != defaults.YAML() {
		t.Fatalf("-print-defaults differs from defaults.yaml: %v", err)
	}
	for _, want := range []string{
		"FROM golang:1.26-bookworm AS build", "libopus-dev", "FROM debian:bookworm-slim", "libopus0",
		"USER nkbridge:nkbridge", "COPY --from=build /out/nkbridge.yaml /etc/nkbridge/nkbridge.yaml",
		`CMD ["-config", "/etc/nkbridge/nkbridge.yaml"`, "--network host", "STOPSIGNAL SIGTERM",
	} {
		if !strings.Contains(df, want) {
			t.Errorf("Dockerfile lacks %q", want)
		}
	}
	if regexp.MustCompile(`(?m)^USER\s+(root|0)\b`).MatchString(df) {
		t.Error("runs as root")
	}
}

// The systemd unit passes systemd-analyze verify (with this binary in place),
// its ExecStartPre check accepts the shipped example, and it waits longer
// than the default drain_timeout on stop.
func TestSystemdUnit(t *testing.T) {
	b, err := os.ReadFile("../../deploy/nkbridge.service")
	if err != nil {
		t.Fatal(err)
	}
	unit := string(b)
	m := regexp.MustCompile(`(?m)^TimeoutStopSec=(\S+)$`).FindStringSubmatch(unit)
	if m == nil {
		t.Fatal("no TimeoutStopSec")
	}
	stop, err := time.ParseDuration(m[1])
	cfg, _ := loadConfig("", envMap(nil))
	if err != nil || stop <= cfg.DrainTimeout {
		t.Fatalf("TimeoutStopSec %s not above drain_timeout %s", m[1], cfg.DrainTimeout)
	}
	if testing.Short() {
		t.Skip("builds the binary")
	}
	sa, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("no systemd-analyze")
	}
	dir := t.TempDir()
	bin := buildBinary(t)
	conf := filepath.Join(dir, "nkbridge.yaml")
	if err := os.WriteFile(conf, []byte(defaults.YAML()), 0o600); err != nil {
		t.Fatal(err)
	}
	unit = strings.ReplaceAll(unit, "/usr/local/bin/nkbridge", bin)
	unit = strings.ReplaceAll(unit, "/etc/nkbridge/nkbridge.yaml", conf)
	path := filepath.Join(dir, "nkbridge.service")
	if err := os.WriteFile(path, []byte(unit), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(sa, "verify", path).CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) != 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
	for _, line := range strings.Split(unit, "\n") {
		for _, key := range []string{"ExecStartPre=", "ExecStart="} {
			if !strings.HasPrefix(line, key) {
				continue
			}
			f := strings.Fields(strings.TrimPrefix(line, key))
			args := f[1:]
			if key == "ExecStart=" {
				args = append(args, "-check-config") // same flags, without serving
			}
			if out, err := exec.Command(f[0], args...).CombinedOutput(); err != nil {
				t.Errorf("%s%v: %v\n%s", key, args, err, out)
			}
		}
	}
}

// The embedded defaults (deploy/nkbridge.example.yaml is a link to them)
// name every configuration key, each leaf with a comment, and the daemon's
// configuration without file or environment has exactly their values.
func TestDefaultsDocumentEveryKey(t *testing.T) {
	var doc map[string]any
	if err := yaml.Unmarshal([]byte(defaults.YAML()), &doc); err != nil {
		t.Fatal(err)
	}
	cfg, err := loadConfig("", envMap(nil))
	if err != nil {
		t.Fatal(err)
	}
	var walk func(v reflect.Value, m map[string]any, prefix string)
	walk = func(v reflect.Value, m map[string]any, prefix string) {
		tp := v.Type()
		for i := 0; i < tp.NumField(); i++ {
			key := strings.Split(tp.Field(i).Tag.Get("yaml"), ",")[0]
			if key == "" || key == "-" {
				continue
			}
			sub, ok := m[key]
			if !ok {
				t.Errorf("defaults.yaml lacks %s%s", prefix, key)
				continue
			}
			fv := v.Field(i)
			switch fv.Kind() {
			case reflect.Struct:
				sm, _ := sub.(map[string]any)
				walk(fv, sm, prefix+key+".")
			case reflect.String, reflect.Int, reflect.Int64, reflect.Float64, reflect.Bool:
				got := fv.Interface()
				if want := defaults.Of(prefix+key, got); got != want {
					t.Errorf("%s%s: default %v, defaults.yaml says %v", prefix, key, got, want)
				}
			}
		}
	}
	walk(reflect.ValueOf(*cfg), doc, "")
	leaf := regexp.MustCompile(`^\s*[a-z_]+:\s*[^\s#]`)
	for i, line := range strings.Split(defaults.YAML(), "\n") {
		if leaf.MatchString(line) && !strings.Contains(line, "#") {
			t.Errorf("defaults.yaml:%d has no comment: %s", i+1, line)
		}
	}
	link, err := os.ReadFile("../../deploy/nkbridge.example.yaml")
	if err != nil || string(link) != defaults.YAML() {
		t.Fatalf("deploy/nkbridge.example.yaml is not the defaults: %v", err)
	}
	if _, err := loadConfig("../../deploy/nkbridge.example.yaml", envMap(nil)); err != nil {
		t.Fatal(err)
	}
}

// The README's run command is scripts/run.sh. On a machine without libopus it installs
// libopus-dev and pkg-config with apt-get (stubbed here: the stub "installs" by unhiding the
// real pkg-config), then builds and runs nkbridge with its arguments; when the install does
// not provide opus it says so and fails.
func TestRunScript(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`(?m)^    scripts/run\.sh$`).Match(readme) {
		t.Error("README's run command is not scripts/run.sh")
	}
	if bytes.Contains(readme, []byte("nolibopusfile")) {
		t.Error("README still mentions the nolibopusfile tag")
	}
	if testing.Short() {
		t.Skip("builds the binary")
	}
	realPkgConfig, err := exec.LookPath("pkg-config")
	if err != nil {
		t.Skip("no pkg-config")
	}
	gocache, err := exec.Command("go", "env", "GOCACHE").Output()
	if err != nil {
		t.Fatal(err)
	}
	run := func(t *testing.T, installWorks bool) (string, string, error) {
		stubs := t.TempDir()
		installed := filepath.Join(stubs, "installed")
		log := filepath.Join(stubs, "apt.log")
		pc := "#!/bin/sh\n[ -e " + installed + " ] && exec " + realPkgConfig + " \"$@\"\nexit 1\n"
		apt := "#!/bin/sh\necho \"$@\" >> " + log + "\n"
		if installWorks {
			apt += "case \"$1\" in install) touch " + installed + ";; esac\n"
		}
		for name, body := range map[string]string{"pkg-config": pc, "apt-get": apt, "sudo": "#!/bin/sh\nexec \"$@\"\n"} {
			if err := os.WriteFile(filepath.Join(stubs, name), []byte(body), 0o755); err != nil {
				t.Fatal(err)
			}
		}
		cmd := exec.Command("../../scripts/run.sh", "-version")
		cmd.Env = append(os.Environ(), "PATH="+stubs+string(os.PathListSeparator)+os.Getenv("PATH"),
			"XDG_CACHE_HOME="+t.TempDir(), "GOCACHE="+strings.TrimSpace(string(gocache)))
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		apts, _ := os.ReadFile(log)
		return stdout.String(), stderr.String() + "\napt-get: " + string(apts), err
	}
	t.Run("installs", func(t *testing.T) {
		out, msgs, err := run(t, true)
		if err != nil || !strings.HasPrefix(out, "nkbridge "+version) {
			t.Fatalf("run.sh -version = %q, %v\n%s", out, err, msgs)
		}
		if !strings.Contains(msgs, "install -y -q --no-install-recommends libopus-dev pkg-config") {
			t.Errorf("did not install libopus-dev and pkg-config:\n%s", msgs)
		}
	})
	t.Run("install fails", func(t *testing.T) {
		out, msgs, err := run(t, false)
		if err == nil || out != "" || !strings.Contains(msgs, "pkg-config still does not find opus") {
			t.Fatalf("run.sh with no opus after install = %q, %v\n%s", out, err, msgs)
		}
	})
}

// docs/API.md, the API reference, lists every error code with its name.
func TestAPIDocListsEveryErrorCode(t *testing.T) {
	doc, err := os.ReadFile("../../docs/API.md")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for code := 1000; code < 10000; code++ {
		name := signaling.CodeName(code)
		if name == "" {
			continue
		}
		n++
		if row := fmt.Sprintf("| %d | %s |", code, name); !bytes.Contains(doc, []byte(row)) {
			t.Errorf("docs/API.md lacks %q", row)
		}
	}
	if n < 45 {
		t.Fatalf("only %d codes known", n)
	}
}

// The README's configuration table shows the defaults of defaults.yaml, the variable of each
// key, and lists no key the configuration lacks.
func TestREADMEConfigTableMatchesDefaults(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	row := regexp.MustCompile("(?m)^\\| `([a-z_.]+)` \\| ([^|]+) \\| ([^|]+) \\|")
	n := 0
	for _, m := range row.FindAllStringSubmatch(string(readme), -1) {
		key, def, env := m[1], strings.TrimSpace(m[2]), strings.TrimSpace(m[3])
		v, ok := defaults.Lookup(key)
		if !ok {
			t.Errorf("README lists %s, which defaults.yaml lacks", key)
			continue
		}
		n++
		want := fmt.Sprint(v)
		switch x := v.(type) {
		case []any:
			if len(x) > 0 {
				continue // shown in defaults.yaml
			}
			want = "[]"
		case map[string]any:
			if len(x) > 0 {
				continue
			}
			want = "{}"
		}
		if want == "" {
			want = "empty"
		} else {
			want = "`" + want + "`"
		}
		if def != want {
			t.Errorf("README: %s defaults to %s, defaults.yaml says %s", key, def, want)
		}
		if wantEnv := "`NKB_" + strings.ToUpper(strings.ReplaceAll(key, ".", "_")) + "`"; env != wantEnv && env != "(file only)" {
			t.Errorf("README: %s has variable %s, want %s", key, env, wantEnv)
		}
	}
	if n < 15 {
		t.Fatalf("only %d rows found", n)
	}
}
