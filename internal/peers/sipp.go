package peers

import (
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// SIPpOptions describes one SIPp instance. Every instance binds SIP and media to 127.0.0.1.
type SIPpOptions struct {
	// Scenario is a built-in scenario name ("uac", "uas", "regexp", "branchc", "uac_pcap",
	// ...; passed as -sn) or the path of an XML scenario file (-sf). Required.
	Scenario string
	// Remote is the target "127.0.0.1:port" for client scenarios; empty for servers.
	Remote string
	// Transport is SIPp's -t mode ("u1" UDP one socket, "t1" TCP one socket, "un" UDP one
	// socket per call, ...). Default u1.
	Transport string
	// Port is the local SIP port (-p). 0 picks a free one (see SIPp.Port).
	Port int
	// Calls stops SIPp after this many calls (-m). 0 = no limit (then set Timeout).
	Calls int
	// Rate is the call rate per RatePeriod (-r, -rp); 0 leaves SIPp's default (10/s).
	Rate       float64
	RatePeriod time.Duration
	// Limit caps simultaneous calls (-l); 0 leaves SIPp's default.
	Limit int
	// Service is the request-URI user (-s).
	Service string
	// InfFile is a CSV injection file (-inf), e.g. credentials.
	InfFile string
	// Keys are -key name value pairs, available as [name] in scenarios.
	Keys map[string]string
	// Timeout is SIPp's global timeout (-timeout, with -timeout_error so hitting it fails).
	// Default 60 s: every run is bounded in time.
	Timeout time.Duration
	// RecvTimeout is the default receive timeout (-recv_timeout); 0 leaves SIPp's default.
	RecvTimeout time.Duration
	// Args are extra SIPp arguments.
	Args []string
	// Logger receives SIPp's output at debug level; default: t.Log.
	Logger *slog.Logger
}

// SIPp is a running SIPp instance.
type SIPp struct {
	proc      *Process
	dir       string
	port      int
	mediaPort int
	name      string
}

// SIPpResult is how a SIPp run ended.
type SIPpResult struct {
	// ExitCode is SIPp's status: 0 every call succeeded, 1 at least one call failed, 97
	// stopped by an internal command, 99 normal exit with no call processed, 255 (-1) fatal
	// error, 254 (-2) fatal error binding a socket.
	ExitCode int
	// Stats is the last line of the -trace_stat file: cumulative counters.
	Stats SIPpStats
	// Errors is the content of the -trace_err file (unexpected messages), if any.
	Errors string
	// Output is the tail of SIPp's screen output.
	Output string
}

// SIPpStats are the cumulative ("(C)") counters of SIPp's -trace_stat CSV, plus every raw
// column by name.
type SIPpStats struct {
	IncomingCalls    int // IncomingCall(C)
	OutgoingCalls    int // OutgoingCall(C)
	SuccessfulCalls  int // SuccessfulCall(C)
	FailedCalls      int // FailedCall(C)
	Retransmissions  int // Retransmissions(C)
	FatalErrors      int // FatalErrors(C)
	CurrentCalls     int // CurrentCall
	TotalCallCreated int // TotalCallCreated
	Raw              map[string]string
}

// Int returns a raw numeric column (0 if missing or not a number).
func (s SIPpStats) Int(column string) int {
	n, _ := strconv.Atoi(s.Raw[column])
	return n
}

// StartSIPp starts SIPp with o, bound to the test's lifetime, and returns once SIPp is
// listening on its SIP port (so a server scenario is ready for calls). Use Wait for the
// result. When SIPp cannot bind a port that StartSIPp chose, it retries with new ports. It
// skips or fails (NKB_REQUIRE_PEERS=1) the test when sipp is missing.
func StartSIPp(t testing.TB, o SIPpOptions) *SIPp {
	t.Helper()
	bin := Need(t, "sipp")
	if o.Scenario == "" {
		t.Fatalf("peers.StartSIPp: no scenario")
	}
	if o.Logger == nil {
		o.Logger = TestLogger(t)
	}
	if o.Transport == "" {
		o.Transport = "u1"
	}
	if o.Timeout == 0 {
		o.Timeout = 60 * time.Second
	}
	for attempt := 1; ; attempt++ {
		s, err := startSIPp(t, bin, o)
		if err == nil {
			return s
		}
		if o.Port != 0 || attempt == 3 || s == nil || s.proc.ExitCode() != 254 {
			out := ""
			if s != nil {
				out = s.proc.Output()
			}
			t.Fatalf("peers.StartSIPp: %v\n%s", err, out)
		}
		o.Logger.Warn("sipp could not bind its ports; retrying with others", "attempt", attempt)
	}
}

func startSIPp(t testing.TB, bin string, o SIPpOptions) (*SIPp, error) {
	dir := t.TempDir()
	s := &SIPp{dir: dir, port: o.Port, name: filepath.Base(o.Scenario)}
	if s.port == 0 {
		s.port = FreePort(t)
	}
	// SIPp binds its media port and the three above it.
	s.mediaPort = FreeUDPRange(t, 4)

	var args []string
	if strings.HasSuffix(o.Scenario, ".xml") || strings.ContainsRune(o.Scenario, '/') {
		sf, err := filepath.Abs(o.Scenario)
		if err != nil {
			return nil, err
		}
		args = append(args, "-sf", sf)
	} else {
		args = append(args, "-sn", o.Scenario)
	}
	if o.Remote != "" {
		args = append(args, o.Remote)
	}
	args = append(args,
		"-i", "127.0.0.1", "-mi", "127.0.0.1",
		"-p", strconv.Itoa(s.port),
		"-mp", strconv.Itoa(s.mediaPort),
		"-cp", strconv.Itoa(FreeUDPPort(t)),
		"-t", o.Transport,
		"-nostdin",
		"-timeout", fmt.Sprintf("%dms", o.Timeout.Milliseconds()), "-timeout_error",
		"-trace_stat", "-stf", filepath.Join(dir, "stat.csv"), "-fd", "1",
		"-trace_err", "-error_file", filepath.Join(dir, "errors.log"),
	)
	if o.Calls > 0 {
		args = append(args, "-m", strconv.Itoa(o.Calls))
	}
	if o.Rate > 0 {
		args = append(args, "-r", strconv.FormatFloat(o.Rate, 'f', -1, 64))
	}
	if o.RatePeriod > 0 {
		args = append(args, "-rp", fmt.Sprintf("%dms", o.RatePeriod.Milliseconds()))
	}
	if o.Limit > 0 {
		args = append(args, "-l", strconv.Itoa(o.Limit))
	}
	if o.Service != "" {
		args = append(args, "-s", o.Service)
	}
	if o.InfFile != "" {
		inf, err := filepath.Abs(o.InfFile)
		if err != nil {
			return nil, err
		}
		args = append(args, "-inf", inf)
	}
	if o.RecvTimeout > 0 {
		args = append(args, "-recv_timeout", fmt.Sprintf("%dms", o.RecvTimeout.Milliseconds()))
	}
	for k, v := range o.Keys {
		args = append(args, "-key", k, v)
	}
	args = append(args, o.Args...)

	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	p, err := StartProcess(t, "sipp-"+s.name, cmd, o.Logger)
	if err != nil {
		return nil, err
	}
	s.proc = p

	// Ready when the SIP socket is bound. A client may finish (or fail) before we look.
	proto := "udp"
	if strings.HasPrefix(o.Transport, "t") || strings.HasPrefix(o.Transport, "l") {
		proto = "tcp"
	}
	deadline := time.Now().Add(10 * time.Second)
	for !Listening(proto, s.port) {
		select {
		case <-p.Done():
			if code := p.ExitCode(); code == 254 || code == 255 {
				return s, fmt.Errorf("sipp exited with %d (fatal error) at start", code)
			}
			return s, nil
		default:
		}
		if time.Now().After(deadline) {
			return s, fmt.Errorf("sipp not listening on %s port %d after 10 s", proto, s.port)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return s, nil
}

// RunSIPp runs SIPp to completion (or until ctx ends, when it is stopped) and returns the
// result. A non-zero exit is not an error: check Result.ExitCode.
func RunSIPp(ctx context.Context, t testing.TB, o SIPpOptions) (*SIPpResult, error) {
	t.Helper()
	return StartSIPp(t, o).Wait(ctx)
}

// Port is SIPp's local SIP port on 127.0.0.1.
func (s *SIPp) Port() int { return s.port }

// Addr is SIPp's SIP address, "127.0.0.1:port".
func (s *SIPp) Addr() string { return "127.0.0.1:" + strconv.Itoa(s.port) }

// MediaPort is the base of the four UDP ports SIPp binds for media (-mp).
func (s *SIPp) MediaPort() int { return s.mediaPort }

// Dir is the instance's working directory (stat.csv, errors.log, scenario logs).
func (s *SIPp) Dir() string { return s.dir }

// Process is the underlying child process.
func (s *SIPp) Process() *Process { return s.proc }

// Wait waits until SIPp exits and returns its result. If ctx ends first, SIPp is stopped,
// and the result (of the stopped run) is returned with ctx's error.
func (s *SIPp) Wait(ctx context.Context) (*SIPpResult, error) {
	err := s.proc.Wait(ctx)
	if ctx.Err() != nil {
		s.proc.Stop(2 * time.Second)
	}
	res := &SIPpResult{ExitCode: s.proc.ExitCode(), Output: s.proc.Output()}
	if b, rerr := os.ReadFile(filepath.Join(s.dir, "errors.log")); rerr == nil {
		res.Errors = string(b)
	}
	stats, serr := ReadSIPpStats(filepath.Join(s.dir, "stat.csv"))
	res.Stats = stats
	if ctx.Err() != nil {
		return res, fmt.Errorf("peers: sipp %s: %w", s.name, ctx.Err())
	}
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		return res, fmt.Errorf("peers: sipp %s: %w", s.name, err)
	}
	if serr != nil && res.ExitCode != 254 && res.ExitCode != 255 {
		return res, fmt.Errorf("peers: sipp %s: %w", s.name, serr)
	}
	return res, nil
}

// Stop stops SIPp (SIGTERM, then SIGKILL) and reaps it.
func (s *SIPp) Stop() { s.proc.Stop(2 * time.Second) }

// ReadSIPpStats parses the last row of a SIPp -trace_stat CSV file.
func ReadSIPpStats(path string) (SIPpStats, error) {
	f, err := os.Open(path)
	if err != nil {
		return SIPpStats{}, err
	}
	defer f.Close()
	return ParseSIPpStats(f)
}

// ParseSIPpStats parses a SIPp -trace_stat CSV (';'-separated, a header row, one row per
// dump) and returns the last row.
func ParseSIPpStats(r io.Reader) (SIPpStats, error) {
	cr := csv.NewReader(r)
	cr.Comma = ';'
	cr.FieldsPerRecord = -1
	cr.LazyQuotes = true
	cr.ReuseRecord = false
	header, err := cr.Read()
	if err != nil {
		return SIPpStats{}, fmt.Errorf("sipp stats: %w", err)
	}
	var last []string
	for rows := 0; ; rows++ {
		rec, err := cr.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			return SIPpStats{}, fmt.Errorf("sipp stats: %w", err)
		}
		if rows > 1_000_000 {
			return SIPpStats{}, errors.New("sipp stats: too many rows")
		}
		last = rec
	}
	if last == nil {
		return SIPpStats{}, errors.New("sipp stats: no data row")
	}
	st := SIPpStats{Raw: make(map[string]string, len(header))}
	for i, h := range header {
		if i < len(last) {
			st.Raw[h] = last[i]
		}
	}
	st.IncomingCalls = st.Int("IncomingCall(C)")
	st.OutgoingCalls = st.Int("OutgoingCall(C)")
	st.SuccessfulCalls = st.Int("SuccessfulCall(C)")
	st.FailedCalls = st.Int("FailedCall(C)")
	st.Retransmissions = st.Int("Retransmissions(C)")
	st.FatalErrors = st.Int("FatalErrors(C)")
	st.CurrentCalls = st.Int("CurrentCall")
	st.TotalCallCreated = st.Int("TotalCallCreated")
	return st, nil
}
