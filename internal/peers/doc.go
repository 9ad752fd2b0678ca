// Package peers runs the real peers of nkbridge's tests — SIPp, baresip, nats-server, Kamailio
// and nkbridge itself — as child processes bound to a test's lifetime, and holds the rules
// every real-peer test shares.
//
// # The rules
//
// Need(t, "sipp") returns a program's path, or skips the test — or fails it when
// NKB_REQUIRE_PEERS=1, as scripts/test.sh sets — when it is missing; NeedFile does the same
// for files. RepoRoot finds the repository, ArtifactDir gives test-artifacts/<test>/ for files
// worth keeping, TestLogger (TestLoggerLevel) a *slog.Logger that writes to t.Log. FreePort, FreeUDPPort,
// FreeTCPPort and FreeUDPRange find loopback ports for parallel instances, picked below the
// kernel's ephemeral range so that no process binding port 0 takes them in the meantime.
// Listening tells whether a port is bound (from /proc/net).
//
// StartProcess runs any command in its own process group with SIGKILL-on-parent-death; the
// test's cleanup stops it (SIGTERM, then SIGKILL to the whole group) and reaps it, so no
// process outlives its test. Its output goes to the logger at debug level (colour codes
// stripped) and the last 64 KiB stay available in Output.
//
// # SIPp
//
//	uas := peers.StartSIPp(t, peers.SIPpOptions{Scenario: "uas", Calls: 5})
//	res, err := peers.RunSIPp(ctx, t, peers.SIPpOptions{
//		Scenario: "testdata/my-uac.xml",  // or a built-in name: "uac", "uas", ...
//		Remote:   "127.0.0.1:5060",       // e.g. nkbridge's SIP listener, or uas.Addr()
//		Calls:    100, Rate: 50, Limit: 20,
//		Service:  "echo", Keys: map[string]string{"user": "alice"}, InfFile: "users.csv",
//	})
//	// res.ExitCode: 0 all calls succeeded, 1 some failed, 254/255 fatal (bind, ...)
//	// res.Stats.SuccessfulCalls, FailedCalls, OutgoingCalls, IncomingCalls, Raw["..."]
//	// res.Errors: the -trace_err log (unexpected messages); res.Output: the screen
//
// Every instance gets -i/-mi 127.0.0.1, its own SIP port (Port, or a free one: Addr),
// control port (-cp) and four media ports (-mp, MediaPort), -nostdin, a global -timeout
// (default 60 s, with -timeout_error) so every run is bounded in time, and -trace_stat /
// -trace_err files in its own directory (Dir). StartSIPp returns once SIPp's SIP socket is
// bound (a uas is ready for calls); if a port it picked was taken meanwhile, it retries with
// others. Wait(ctx) returns the result; a ctx that ends stops SIPp.
//
// Plain RTP from SIPp: Scenario(t, "uac-pcmu-tone.xml") is a caller that streams a raw µ-law
// file with rtp_stream for the call length (-d) and hangs up. PCMUToneFile writes such a
// file; EncodePCMU/DecodePCMU convert samples.
//
//	res, err := peers.RunSIPp(ctx, t, peers.SIPpOptions{
//		Scenario: peers.Scenario(t, "uac-pcmu-tone.xml"), Remote: addr, Service: "echo", Calls: 1,
//		Keys: map[string]string{"rtp_stream": peers.PCMUToneFile(t, 1000, 5) + ",-1,0"},
//		Args: []string{"-d", "2000"},
//	})
//
// # baresip
//
//	alice := peers.StartBaresip(t, peers.BaresipOptions{User: "alice", Codec: "opus", ToneHz: 1000})
//	bob := peers.StartBaresip(t, peers.BaresipOptions{User: "bob", ToneHz: 600})
//	err := alice.Dial(ctx, bob.URI())           // or "sip:echo@127.0.0.1:5060" (nkbridge)
//	_, _, err = bob.WaitEvent(ctx, "CALL_ESTABLISHED", 0)
//	err = alice.WaitHeard(ctx, 1500*time.Millisecond) // talk: 1.5 s of audio received
//	err = alice.Hangup(ctx)
//	_, _, err = alice.WaitEvent(ctx, "CALL_CLOSED", 0)
//	heard, rate, err := alice.Heard()            // what alice received, as samples
//	f, ratio := audiotest.Dominant(heard, float64(rate), 600, 1000)
//
// Each instance has a fresh config directory: SIP on 127.0.0.1 (SIPPort, URI), the account
// <sip:USER@127.0.0.1>;regint=0;answermode=auto;audio_codecs=CODEC (or BaresipOptions.Account,
// e.g. to register with nkbridge: "<sip:bob@127.0.0.1:5070>;auth_pass=x;regint=60;..."),
// its microphone an aufile WAV of ToneHz at the codec's rate (8 kHz for pcmu/pcma, 48 kHz
// mono for opus; baresip hangs up when the file ends, so ToneSeconds defaults to 60), no
// audio player, and sndfile recording every call to WAVs (Recordings; Heard is the newest
// "-dec" file, what it received; Sent the newest "-enc" file). Recordings are named by the
// second the call's audio started: two calls of one instance within a second share a name.
// It is driven over ctrl_tcp (netstring JSON): Command(ctx, "dial"|"hangup"|"accept"|
// "hold"|"resume"|"sndcode"|"reginfo"|..., params); events (CALL_INCOMING, CALL_RINGING,
// CALL_ESTABLISHED, CALL_CLOSED, REGISTER_OK, ...) are collected for Events and WaitEvent.
//
// # nats-server and nkbridge nodes
//
//	srv := peers.StartNATS(t, peers.NATSOptions{})     // Debian nats-server, JetStream, loopback
//	cl := peers.StartNATSCluster(t, 3)                 // three servers routed to each other
//	srv.Restart()                                      // same ports and store directory
//	var nkb peers.NkbridgeBuild                        // a package variable: go build once
//	nodes := peers.NewNodes(t, nkb.Path(t))
//	n1 := nodes.Start(peers.NodeOptions{NodeID: "n1", NATSURL: srv.URL(), SIP: true})
//	// n1.APIURL(), n1.SIPAddr, n1.VertoAddr, n1.MetricsAddr; n1.Kill() (SIGKILL), n1.Restart()
//
// Each nats-server gets -a 127.0.0.1, its own client port (and route port in a cluster), -js
// with -sd in a directory of the test, and no monitoring port; StartNATS returns once it logs
// that it is ready. Each node runs the real binary with a config file (NodeOptions.Config) and
// NKB_* variables for its listeners on 127.0.0.1 (API, metrics and Verto on free ports, SIP on
// a free UDP+TCP port when asked), any free WebRTC port, an RTP range of 64 ports that no
// other node of the test shares, and cluster.nats_url / cluster.node_id; Start returns once
// its listeners are up.
//
// StartKamailio checks and runs Debian's kamailio in the foreground on a free loopback UDP
// port (passed to the config as the LISTEN define; other defines with KamailioOptions.Defines),
// as in front of the nodes with testdata/kamailio/kamailio.cfg.
//
// # The network rule
//
// Everything here stays on loopback: SIPp binds and advertises 127.0.0.1; baresip has
// net_interface 127.0.0.1, -4, dns_server 127.0.0.1:53 (it replaces the system resolvers,
// and nothing listens there, so a name lookup fails at once instead of leaving the machine),
// no STUN/TURN/ICE modules, and IP-literal accounts only. Pion peers written in Go follow it
// through LoopbackPion (ICE on 127.0.0.1 over UDP4, no mDNS, no STUN); PCMUPeer is such a
// peer, a loopback PCMU PeerConnection standing in for a browser page.
package peers
