package peers

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Process is a child process bound to a test's lifetime: it runs in its own process group,
// gets SIGKILL if the test binary dies, and is stopped (SIGTERM, then SIGKILL to the whole
// group) and reaped by the test's cleanup at the latest.
type Process struct {
	name string
	cmd  *exec.Cmd
	log  *slog.Logger
	done chan struct{}
	err  error // exit status, valid after done

	mu  sync.Mutex
	out tail
}

// StartProcess starts cmd (which must not have been started). Stdout and stderr that cmd
// leaves nil are logged line by line to log at debug level and their last 64 KiB kept for
// Output; a stream the caller set is left alone. t.Cleanup stops the process.
func StartProcess(t testing.TB, name string, cmd *exec.Cmd, log *slog.Logger) (*Process, error) {
	t.Helper()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	p := &Process{name: name, cmd: cmd, log: log.With("proc", name), done: make(chan struct{})}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	var readers []io.Reader
	if cmd.Stdout == nil {
		r, err := cmd.StdoutPipe()
		if err != nil {
			return nil, err
		}
		readers = append(readers, r)
	}
	if cmd.Stderr == nil {
		r, err := cmd.StderrPipe()
		if err != nil {
			return nil, err
		}
		readers = append(readers, r)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("peers: start %s: %w", name, err)
	}
	var wg sync.WaitGroup
	for _, r := range readers {
		wg.Add(1)
		go p.pump(&wg, r)
	}
	go func() {
		wg.Wait() // the pipes must be drained before Wait closes them
		p.err = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() { p.Stop(5 * time.Second) })
	return p, nil
}

func (p *Process) pump(wg *sync.WaitGroup, r io.Reader) {
	defer wg.Done()
	s := bufio.NewScanner(r)
	s.Buffer(make([]byte, 64*1024), 1024*1024)
	for s.Scan() {
		line := stripANSI(s.Text())
		p.mu.Lock()
		p.out.add(line)
		p.mu.Unlock()
		p.log.Debug(line)
	}
	_, _ = io.Copy(io.Discard, r)
}

// Pid is the process id (and process group id) of the child.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Done is closed when the process has exited and been reaped.
func (p *Process) Done() <-chan struct{} { return p.done }

// Wait waits for the process to exit (or ctx to end) and returns its exit error (nil for
// status 0, an *exec.ExitError otherwise).
func (p *Process) Wait(ctx context.Context) error {
	select {
	case <-p.done:
		return p.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// ExitCode is the exit status after Done (-1 if killed by a signal or still running).
func (p *Process) ExitCode() int {
	select {
	case <-p.done:
		return p.cmd.ProcessState.ExitCode()
	default:
		return -1
	}
}

// Output returns the last 64 KiB of the process's combined stdout and stderr lines.
func (p *Process) Output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

// Stop sends SIGTERM to the process group, waits up to grace for the process to exit, then
// SIGKILLs the whole group and reaps the process. It is safe to call more than once.
func (p *Process) Stop(grace time.Duration) {
	pgid := p.cmd.Process.Pid
	select {
	case <-p.done:
	default:
		_ = syscall.Kill(-pgid, syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(grace):
			p.log.Warn("did not exit after SIGTERM; killing", "grace", grace)
		}
	}
	// Kill whatever is left of the group (the leader, or children that outlived it).
	KillGroup(pgid)
	<-p.done
}

// KillGroup SIGKILLs every process of process group pgid and waits (up to 5 s) until none is
// left. Used for groups this test created (a child started with Setpgid, or Chromium, which
// playwright starts as a group leader).
func KillGroup(pgid int) {
	if pgid <= 1 {
		return
	}
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
	deadline := time.Now().Add(5 * time.Second)
	for len(GroupMembers(pgid)) > 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
}

// GroupMembers lists the live (non-zombie) processes whose process group is pgid.
func GroupMembers(pgid int) []int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var out []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		st, err := readStat(pid)
		if err != nil || st.pgid != pgid || st.state == "Z" {
			continue
		}
		out = append(out, pid)
	}
	return out
}

type procStat struct {
	state      string
	ppid, pgid int
}

func readStat(pid int) (procStat, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return procStat{}, err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return procStat{}, errors.New("bad stat")
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 4 {
		return procStat{}, errors.New("bad stat")
	}
	ppid, _ := strconv.Atoi(f[1])
	pgid, _ := strconv.Atoi(f[2])
	return procStat{state: f[0], ppid: ppid, pgid: pgid}, nil
}

// stripANSI removes terminal colour sequences (ESC [ params letter; baresip colours its
// warnings) and carriage returns (its call status line).
func stripANSI(s string) string {
	if !strings.ContainsAny(s, "\x1b\r") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch {
		case s[i] == '\r':
			b.WriteByte(' ')
		case s[i] == 0x1b && i+1 < len(s) && s[i+1] == '[':
			j := i + 2
			for j < len(s) && (s[j] == ';' || (s[j] >= '0' && s[j] <= '9')) {
				j++
			}
			i = j // skips the final letter too
		default:
			b.WriteByte(s[i])
		}
	}
	return b.String()
}

// tail keeps the last 64 KiB of lines.
type tail struct {
	lines []string
	size  int
}

func (t *tail) add(l string) {
	t.lines = append(t.lines, l)
	t.size += len(l) + 1
	for t.size > 64*1024 && len(t.lines) > 1 {
		t.size -= len(t.lines[0]) + 1
		t.lines = t.lines[1:]
	}
}

func (t *tail) String() string { return strings.Join(t.lines, "\n") }

// Matching lists the live (non-zombie) processes, other than this one, whose command line
// contains substr. Pass something unique to the test, such as a t.TempDir path.
func Matching(substr string) []int {
	if substr == "" {
		return nil
	}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	self := os.Getpid()
	var out []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err != nil || !strings.Contains(string(b), substr) {
			continue
		}
		if st, err := readStat(pid); err != nil || st.state == "Z" {
			continue
		}
		out = append(out, pid)
	}
	return out
}

// KillMatching SIGKILLs the processes Matching(substr) finds and waits (up to 5 s) until they
// are gone.
func KillMatching(substr string) {
	deadline := time.Now().Add(5 * time.Second)
	for {
		pids := Matching(substr)
		if len(pids) == 0 || time.Now().After(deadline) {
			return
		}
		for _, pid := range pids {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Listening reports whether some socket is bound to 127.0.0.1:port (or the any-address) —
// for "udp" any bound socket, for "tcp" one in LISTEN state — per /proc/net/{udp,tcp}.
func Listening(proto string, port int) bool {
	file := "/proc/net/udp"
	if proto == "tcp" {
		file = "/proc/net/tcp"
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return false
	}
	want := []string{
		fmt.Sprintf("0100007F:%04X", port),
		fmt.Sprintf("00000000:%04X", port),
	}
	for _, line := range strings.Split(string(b), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) < 4 || (f[1] != want[0] && f[1] != want[1]) {
			continue
		}
		if proto == "tcp" && f[3] != "0A" {
			continue
		}
		return true
	}
	return false
}
