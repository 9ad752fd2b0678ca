package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/nkbridge/nkbridge/fsbridge/fakefs"
	"github.com/nkbridge/nkbridge/internal/audiotest"
	"github.com/nkbridge/nkbridge/internal/browsertest"
	"github.com/nkbridge/nkbridge/internal/peers"
)

// The guides in docs/guides are run here, step by step, so they cannot rot. A guide marks
// what the test runs in the info string of its fenced blocks: "```sh run NAME" (a command,
// run with the built binary as ./nkbridge; its output may be pasted elsewhere),
// "```sh daemon" (the command that starts nkbridge) and "```yaml FILE" (a file to save).

// guideBlock is one fenced block of a guide.
type guideBlock struct {
	lang string
	tags []string
	text string
}

// guide is a guide's fenced blocks.
type guide struct {
	t      *testing.T
	name   string
	blocks []guideBlock
}

func readGuide(t *testing.T, name string) *guide {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "docs", "guides", name))
	if err != nil {
		t.Fatal(err)
	}
	g := &guide{t: t, name: name}
	var cur *guideBlock
	var text strings.Builder
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "```") {
			if cur == nil {
				f := strings.Fields(strings.TrimPrefix(line, "```"))
				cur = &guideBlock{}
				if len(f) > 0 {
					cur.lang, cur.tags = f[0], f[1:]
				}
				text.Reset()
				continue
			}
			cur.text = text.String()
			g.blocks = append(g.blocks, *cur)
			cur = nil
			continue
		}
		if cur != nil {
			text.WriteString(line + "\n")
		}
	}
	if cur != nil {
		t.Fatalf("%s: a fenced block is not closed", name)
	}
	return g
}

// block returns the one block of lang whose tags start with tags.
func (g *guide) block(lang string, tags ...string) string {
	g.t.Helper()
	var found []string
	for _, b := range g.blocks {
		if b.lang == lang && len(b.tags) >= len(tags) && strings.Join(b.tags[:len(tags)], " ") == strings.Join(tags, " ") {
			found = append(found, b.text)
		}
	}
	if len(found) != 1 {
		g.t.Fatalf("%s: %d blocks ```%s %s, want 1", g.name, len(found), lang, strings.Join(tags, " "))
	}
	return found[0]
}

// replace replaces each old string of pairs by its new one in s, failing if one is missing
// (the guide changed: the test must follow).
func (g *guide) replace(s string, pairs ...string) string {
	g.t.Helper()
	for i := 0; i+1 < len(pairs); i += 2 {
		if !strings.Contains(s, pairs[i]) {
			g.t.Fatalf("%s: %q is no longer in the block the test adapts", g.name, pairs[i])
		}
		s = strings.ReplaceAll(s, pairs[i], pairs[i+1])
	}
	return s
}

// shell runs a guide's shell block in dir with env; its stdout.
func shell(t *testing.T, dir string, env []string, script string) string {
	t.Helper()
	cmd := exec.Command("bash", "-euo", "pipefail", "-c", script)
	cmd.Dir, cmd.Env = dir, env
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("guide step %q: %v\n%s%s", strings.TrimSpace(script), err, out.String(), errb.String())
	}
	return out.String()
}

// TestGuideSIPTrunkAgents runs docs/guides/sip-trunk-agents.md: the password hashes, the
// configuration, -check-config and the daemon as written; baresip plays the carrier's
// customer (600 Hz), two Chromium pages the agents (1000 and 1400 Hz). The customer's call
// to the DID rings agent1, who answers (tones checked both ways) and transfers the caller to
// agent2 (tones checked again, agent1's call gone).
func TestGuideSIPTrunkAgents(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and runs Chromium and baresip")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	g := readGuide(t, "sip-trunk-agents.md")
	work := t.TempDir()
	if err := os.Symlink(buildBinary(t), filepath.Join(work, "nkbridge")); err != nil {
		t.Fatal(err)
	}
	cert, key, _ := peers.SelfSignedCert(t)
	sipPort, rtp := peers.FreePort(t), peers.FreeUDPRange(t, 40)
	env := append(os.Environ(),
		"NKB_LOG_FORMAT=json", "NKB_METRICS_LISTEN=127.0.0.1:0", "NKB_VERTO_LISTEN=",
		"NKB_API_LISTEN=127.0.0.1:0", "NKB_API_TLS_CERT="+cert, "NKB_API_TLS_KEY="+key,
		"NKB_MEDIA_BIND_IP=127.0.0.1", "NKB_MEDIA_PUBLIC_IP=127.0.0.1", "NKB_MEDIA_UDP_PORT=0",
		fmt.Sprintf("NKB_MEDIA_RTP_PORT_MIN=%d", rtp), fmt.Sprintf("NKB_MEDIA_RTP_PORT_MAX=%d", rtp+39),
		fmt.Sprintf("NKB_SIP_LISTEN=127.0.0.1:%d", sipPort), "NKB_SIP_EXTERNAL_HOST=127.0.0.1")

	customer := peers.StartBaresip(t, peers.BaresipOptions{User: "customer", Codec: "pcmu", ToneHz: 600, ToneSeconds: 240})
	h1 := strings.TrimSpace(shell(t, work, env, g.block("sh", "run", "agent1")))
	h2 := strings.TrimSpace(shell(t, work, env, g.block("sh", "run", "agent2")))
	conf := g.replace(g.block("yaml", "nkbridge.yaml"),
		"PASTE_AGENT1_HASH", h1, "PASTE_AGENT2_HASH", h2,
		`"203.0.113.0/24"`, `"127.0.0.0/8"`,
		"203.0.113.5:5060", fmt.Sprintf("127.0.0.1:%d", customer.SIPPort()))
	if err := os.WriteFile(filepath.Join(work, "nkbridge.yaml"), []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	shell(t, work, env, g.block("sh", "run", "check"))
	args := strings.Fields(g.block("sh", "daemon"))
	if len(args) == 0 || args[0] != "./nkbridge" {
		t.Fatalf("the daemon block is %v, want ./nkbridge ...", args)
	}
	cmd := exec.Command(filepath.Join(work, "nkbridge"), args[1:]...)
	cmd.Dir, cmd.Env = work, env
	d := startCommand(t, cmd)

	b := browsertest.Launch(t, browsertest.Options{LoopbackPC: true, ExtraArgs: []string{"--ignore-certificate-errors"}})
	agentPage := func(user string, tone float64) *demoPage {
		p := &demoPage{t: t, name: user, p: b.NewPage(ctx, "https://"+d.addr+"/demo/agent.html"), ctx: ctx}
		p.wait(`window.agent !== undefined`, user+" page loaded")
		p.loginAs(user, user+"-change-me", tone)
		return p
	}
	a1, a2 := agentPage("agent1", 1000), agentPage("agent2", 1400)

	// customerHears waits until the newest 400 ms the customer's phone recorded are hz.
	customerHears := func(hz float64, what string) {
		t.Helper()
		var last string
		peers.WaitFor(t, 20*time.Second, what, func() bool {
			s, rate, err := customer.Heard()
			if err != nil || len(s) < rate {
				last = fmt.Sprint(err)
				return false
			}
			w := s[len(s)-rate*4/10:]
			f, ratio := audiotest.Dominant(w, float64(rate), 1000, 1400, 600)
			last = fmt.Sprintf("dominant %v ratio %.1f", f, ratio)
			return f == hz && ratio > 10
		})
		t.Logf("%s: %s", what, last)
	}

	if err := customer.Dial(ctx, fmt.Sprintf("sip:+15550100@127.0.0.1:%d", sipPort)); err != nil {
		t.Fatal(err)
	}
	a1.wait(`document.querySelectorAll("#ringing li").length === 1`, "the DID rings agent1")
	a1.click("#ringing li .answer")
	a1.wait(`document.getElementById("call-status").textContent === "in call"`, "agent1 answered")
	if _, _, err := customer.WaitEvent(ctx, "CALL_ESTABLISHED", 0); err != nil {
		t.Fatal(err)
	}
	a1.hearsUntil(`agent.call.remote`, []float64{600}, []float64{1000, 1400}, "agent1 hears the customer")
	customerHears(1000, "the customer hears agent1")

	a1.set("transfer-to", "agent2")
	a1.click("#transfer")
	a2.wait(`document.querySelectorAll("#ringing li").length === 1`, "the transfer rings agent2")
	a2.click("#ringing li .answer")
	a2.wait(`document.getElementById("call-status").textContent === "in call"`, "agent2 answered")
	a2.hearsUntil(`agent.call.remote`, []float64{600}, []float64{1000, 1400}, "agent2 hears the customer")
	customerHears(1400, "the customer hears agent2")
	a1.wait(`agent.call === null`, "agent1's call ended with the transfer")
}

// TestGuideFreeSWITCH runs docs/guides/freeswitch.md: the FreeSWITCH files copied and given a
// password, nkbridge's configuration, -check-config and the daemon as written, with the
// FreeSWITCH stand-in (fakefs) in FreeSWITCH's place, started with the password read from the
// edited event_socket.conf.xml. Chromium runs the guide's browser snippet on the demo page:
// it must hear the conference (the stand-in's mix, 600 Hz), and the stand-in must hold the
// browser's channel in conference "sales".
func TestGuideFreeSWITCH(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and runs Chromium")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	g := readGuide(t, "freeswitch.md")
	work := t.TempDir()
	if err := os.Symlink(buildBinary(t), filepath.Join(work, "nkbridge")); err != nil {
		t.Fatal(err)
	}
	env := append(append(os.Environ(), testPortsEnv...), "NKBRIDGE_SRC="+peers.RepoRoot(t), "NKB_LOG_FORMAT=json")
	shell(t, work, env, g.block("sh", "run", "copy"))
	shell(t, work, env, g.block("sh", "run", "password"))
	xml, err := os.ReadFile(filepath.Join(work, "freeswitch", "autoload_configs", "event_socket.conf.xml"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`<param name="password" value="([^"]+)"/>`).FindSubmatch(xml)
	if m == nil {
		t.Fatalf("no password in the edited event_socket.conf.xml:\n%s", xml)
	}
	fs, err := fakefs.Start(fakefs.Options{Password: string(m[1]), Logger: peers.TestLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer fs.Close()
	agent, err := fakefs.StartSIP(fs, fakefs.SIPOptions{Logger: peers.TestLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer agent.Close()
	env = append(env, "NKB_FREESWITCH_ESL_ADDR="+fs.Addr(), "NKB_FREESWITCH_SIP_ADDR="+agent.Addr())
	if err := os.WriteFile(filepath.Join(work, "nkbridge.yaml"), []byte(g.block("yaml", "nkbridge.yaml")), 0o600); err != nil {
		t.Fatal(err)
	}
	shell(t, work, env, g.block("sh", "run", "check"))
	args := strings.Fields(g.block("sh", "daemon"))
	if len(args) == 0 || args[0] != "./nkbridge" {
		t.Fatalf("the daemon block is %v, want ./nkbridge ...", args)
	}
	cmd := exec.Command(filepath.Join(work, "nkbridge"), args[1:]...)
	cmd.Dir, cmd.Env = work, env
	d := startCommand(t, cmd)
	peers.WaitFor(t, 20*time.Second, "nkbridge's 'esl: connected'", func() bool {
		return strings.Contains(d.logs.String(), `"msg":"esl: connected"`)
	})

	// The browser snippet, its imports turned into dynamic ones, in the demo page.
	js := regexp.MustCompile(`(?m)^import \{([^}]*)\} from ("[^"]+");$`).ReplaceAllString(g.block("js", "browser"), "const {$1} = await import($2);")
	b := browsertest.Launch(t, browsertest.Options{LoopbackPC: true})
	p := &demoPage{t: t, name: "browser", p: b.NewPage(ctx, "http://"+d.addr+"/demo/"), ctx: ctx}
	var done bool
	p.eval("(async () => {\n"+js+"\nreturn true; })()", &done)
	p.hearsUntil(`window.conference.audio.srcObject`, []float64{600}, []float64{1000}, "the browser hears the FreeSWITCH conference")
	var in []string
	for _, ch := range fs.Channels() {
		if ch.Conference != "" {
			in = append(in, ch.Conference+"@"+ch.ConferenceProfile)
		}
	}
	if len(in) != 1 || in[0] != "sales@nkbridge" {
		t.Fatalf("FreeSWITCH's conference members: %v, want one in sales@nkbridge", in)
	}
}
