// nkbridge browser test helpers: defines window.nkb in every page a browsertest browser opens
// (injected as an init script; also served by browsertest.Assets as /rtc-helpers.js).
//
// Everything here keeps media on loopback: SDP host candidates are rewritten to 127.0.0.1 and
// IPv6, TCP, mDNS and non-host candidates are dropped before any SDP leaves the page.
// Plain classic script (no modules) so it can run as an init script before the page's own code.
(function () {
  "use strict";
  if (typeof window === "undefined" || window.nkb) return;

  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

  // waitFor polls fn (sync or async) until it returns a truthy value, which it resolves to.
  async function waitFor(fn, timeoutMs = 10000, intervalMs = 50, what = "condition") {
    const end = Date.now() + timeoutMs;
    let last;
    for (;;) {
      try {
        last = await fn();
        if (last) return last;
      } catch (e) {
        last = e;
      }
      if (Date.now() > end) {
        throw new Error(`nkb.waitFor: timed out after ${timeoutMs} ms waiting for ${what}` +
          (last instanceof Error ? `: ${last.message}` : ""));
      }
      await sleep(intervalMs);
    }
  }

  // getUserMedia with echo cancellation, noise suppression and AGC off (noise suppression
  // would cut the fake microphone's pure tone tenfold).
  async function getUserMedia(opts = {}) {
    const audio = {
      echoCancellation: false,
      noiseSuppression: false,
      autoGainControl: false,
      ...(opts.audio || {}),
    };
    return navigator.mediaDevices.getUserMedia({ audio, video: opts.video || false });
  }

  // --- SDP candidate rewriting ---------------------------------------------------------------

  const LOOPBACK = "127.0.0.1";

  // rewriteCandidate takes the value of a candidate (with or without the "a=" / "candidate:"
  // prefix) and returns it rewritten to 127.0.0.1, or null when it must be dropped
  // (IPv6, TCP, or a non-host candidate).
  function rewriteCandidate(line) {
    if (!line) return null;
    let prefix = "";
    let body = line.trim();
    for (const p of ["a=", "candidate:"]) {
      if (body.startsWith(p)) {
        prefix += p;
        body = body.slice(p.length);
      }
    }
    // foundation component transport priority address port "typ" type ...
    const f = body.split(/\s+/);
    if (f.length < 8 || f[6] !== "typ") return null;
    if (f[2].toLowerCase() !== "udp") return null;
    if (f[7] !== "host") return null;
    const addr = f[4];
    if (addr.includes(":")) return null; // IPv6
    f[4] = LOOPBACK; // IPv4 of any interface, or an mDNS name
    // A host candidate carries no raddr/rport, but be strict anyway.
    for (let i = 8; i + 1 < f.length; i += 2) {
      if (f[i] === "raddr") f[i + 1] = LOOPBACK;
    }
    return prefix + f.join(" ");
  }

  // loopbackSDP rewrites a whole SDP: c= lines and host candidates to 127.0.0.1, drops every
  // other candidate; a=rtcp addresses too. Keeps CRLF line endings.
  function loopbackSDP(sdp) {
    const out = [];
    for (const raw of sdp.split(/\r?\n/)) {
      if (raw === "") continue;
      if (raw.startsWith("a=candidate:")) {
        const c = rewriteCandidate(raw);
        if (c) out.push(c);
        continue;
      }
      if (raw.startsWith("c=IN IP4 ") || raw.startsWith("c=IN IP6 ")) {
        out.push("c=IN IP4 " + LOOPBACK);
        continue;
      }
      const m = /^a=rtcp:(\d+) IN IP[46] \S+$/.exec(raw);
      if (m) {
        out.push(`a=rtcp:${m[1]} IN IP4 ${LOOPBACK}`);
        continue;
      }
      out.push(raw);
    }
    return out.join("\r\n") + "\r\n";
  }

  // candidateInit rewrites a trickled RTCIceCandidate (or its init dict) for sending, or
  // returns null when it must not be sent. An end-of-candidates (empty) candidate is kept.
  function candidateInit(c) {
    if (!c) return null;
    const init = typeof c.toJSON === "function" ? c.toJSON() : { ...c };
    if (!init.candidate) return init;
    const r = rewriteCandidate(init.candidate);
    if (!r) return null;
    init.candidate = r.startsWith("candidate:") ? r : "candidate:" + r;
    return init;
  }

  // waitIceComplete resolves when pc has finished gathering candidates.
  function waitIceComplete(pc, timeoutMs = 10000) {
    if (pc.iceGatheringState === "complete") return Promise.resolve();
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => {
        pc.removeEventListener("icegatheringstatechange", check);
        reject(new Error("nkb.waitIceComplete: ICE gathering did not complete in " + timeoutMs + " ms"));
      }, timeoutMs);
      function check() {
        if (pc.iceGatheringState === "complete") {
          clearTimeout(t);
          pc.removeEventListener("icegatheringstatechange", check);
          resolve();
        }
      }
      pc.addEventListener("icegatheringstatechange", check);
    });
  }

  // localSDP waits for gathering to complete and returns {type, sdp} with the SDP rewritten
  // for loopback: what to send to the other side (full-SDP, non-trickle signalling).
  async function localSDP(pc, timeoutMs = 10000) {
    await waitIceComplete(pc, timeoutMs);
    const d = pc.localDescription;
    return { type: d.type, sdp: loopbackSDP(d.sdp) };
  }

  // newPC returns an RTCPeerConnection with no ICE servers (no STUN/TURN ever).
  function newPC(config = {}) {
    return new RTCPeerConnection({ ...config, iceServers: [] });
  }

  // installLoopbackPC replaces window.RTCPeerConnection with a subclass that keeps libraries
  // which do their own signalling (the Verto client, sip.js) on loopback: no ICE servers,
  // localDescription / currentLocalDescription / pendingLocalDescription rewritten with
  // loopbackSDP, and icecandidate events (addEventListener and onicecandidate) carrying the
  // candidateInit rewrite, or suppressed when the candidate must be dropped. Call it before the
  // library creates its first connection (browsertest.Options.LoopbackPC does it at page start).
  function installLoopbackPC() {
    const Orig = window.RTCPeerConnection;
    if (!Orig || Orig.nkbLoopback) return;
    const rewriteDesc = (d) => (d && d.sdp ? new RTCSessionDescription({ type: d.type, sdp: loopbackSDP(d.sdp) }) : d);
    const wrapIce = (fn) => function (ev) {
      if (!ev || !ev.candidate || !ev.candidate.candidate) return fn.call(this, ev);
      const init = candidateInit(ev.candidate);
      if (!init) return undefined;
      const e2 = new RTCPeerConnectionIceEvent("icecandidate", { candidate: new RTCIceCandidate(init) });
      return fn.call(this, e2);
    };
    const wrapped = new WeakMap();
    class LoopbackPC extends Orig {
      constructor(config, ...rest) {
        super({ ...(config || {}), iceServers: [] }, ...rest);
      }
      setConfiguration(config) {
        return super.setConfiguration({ ...(config || {}), iceServers: [] });
      }
      get localDescription() { return rewriteDesc(super.localDescription); }
      get currentLocalDescription() { return rewriteDesc(super.currentLocalDescription); }
      get pendingLocalDescription() { return rewriteDesc(super.pendingLocalDescription); }
      get onicecandidate() { return this.nkbOnIce || null; }
      set onicecandidate(fn) {
        this.nkbOnIce = fn;
        super.onicecandidate = typeof fn === "function" ? wrapIce(fn) : fn;
      }
      addEventListener(type, fn, opts) {
        if (type === "icecandidate" && typeof fn === "function") {
          if (!wrapped.has(fn)) wrapped.set(fn, wrapIce(fn));
          return super.addEventListener(type, wrapped.get(fn), opts);
        }
        return super.addEventListener(type, fn, opts);
      }
      removeEventListener(type, fn, opts) {
        if (type === "icecandidate" && wrapped.has(fn)) return super.removeEventListener(type, wrapped.get(fn), opts);
        return super.removeEventListener(type, fn, opts);
      }
    }
    LoopbackPC.nkbLoopback = true;
    window.RTCPeerConnection = LoopbackPC;
    if (window.webkitRTCPeerConnection) window.webkitRTCPeerConnection = LoopbackPC;
  }

  // --- playing and measuring remote audio ------------------------------------------------------

  // playRemote plays a MediaStream (or a track) in a new <audio autoplay> element, which
  // Chromium needs before it reports audioLevel and feeds remote audio to WebAudio.
  function playRemote(streamOrTrack) {
    const stream = streamOrTrack instanceof MediaStream ? streamOrTrack : new MediaStream([streamOrTrack]);
    const el = document.createElement("audio");
    el.autoplay = true;
    el.srcObject = stream;
    (document.body || document.documentElement).appendChild(el);
    el.play().catch(() => {});
    return el;
  }

  // keepLastStream records on pc the stream of its last ontrack event (pc.nkbLastStream, null
  // when that event had none): what a client that keeps one remote stream (@signalwire/js) plays.
  function keepLastStream(pc) {
    pc.nkbLastStream = null;
    pc.addEventListener("track", (e) => { pc.nkbLastStream = e.streams[0] || null; });
  }

  // heardStream plays stream (once) and measures it for ms (default 1500) at freqs:
  // {audio: measureAudio(...), stats: audioStats(pc)}. It throws when there is no stream or it
  // has no audio track (the client would play nothing).
  async function heardStream(stream, pc, freqs, ms) {
    if (!stream) throw new Error("no remote stream");
    if (stream.getAudioTracks().length === 0) {
      throw new Error("the remote stream has no audio track (" + stream.getTracks().map((t) => t.kind).join(",") + ")");
    }
    if (!stream.nkbPlaying) {
      playRemote(stream);
      stream.nkbPlaying = true;
      await sleep(500);
    }
    return { audio: await measureAudio(stream, { ms: ms || 1500, freqs }), stats: await audioStats(pc) };
  }

  let audioCtx = null;
  function ctx() {
    if (!audioCtx) audioCtx = new AudioContext();
    if (audioCtx.state === "suspended") audioCtx.resume();
    return audioCtx;
  }

  // measureAudio runs an AnalyserNode FFT on a stream (or track) for ms milliseconds and returns
  //   {dominantHz, dominantDb, rmsDb, sampleRate, binHz, frames, levels: {"<hz>": dB, ...}}
  // where dB values are averaged FFT magnitudes in dBFS (more negative = quieter), rmsDb is
  // the time-domain RMS in dBFS, and levels holds the bin level at each freqs entry.
  // Frequencies below minHz (default 100) are ignored when finding the dominant one.
  async function measureAudio(streamOrTrack, opts = {}) {
    const ms = opts.ms ?? 1000;
    const freqs = opts.freqs ?? [];
    const minHz = opts.minHz ?? 100;
    const stream = streamOrTrack instanceof MediaStream ? streamOrTrack : new MediaStream([streamOrTrack]);
    const ac = ctx();
    if (ac.state !== "running") await ac.resume();
    const src = ac.createMediaStreamSource(stream);
    const an = ac.createAnalyser();
    an.fftSize = opts.fftSize ?? 8192;
    an.smoothingTimeConstant = 0;
    src.connect(an);
    const bins = an.frequencyBinCount;
    const spec = new Float32Array(bins);
    const sum = new Float64Array(bins); // linear power sum
    const td = new Float32Array(an.fftSize);
    let frames = 0;
    let sq = 0;
    let n = 0;
    const end = performance.now() + ms;
    while (performance.now() < end) {
      await sleep(Math.max(20, (an.fftSize / ac.sampleRate) * 1000 / 2));
      an.getFloatFrequencyData(spec);
      for (let i = 0; i < bins; i++) {
        const db = spec[i];
        if (Number.isFinite(db)) sum[i] += Math.pow(10, db / 10);
      }
      an.getFloatTimeDomainData(td);
      for (const x of td) sq += x * x;
      n += td.length;
      frames++;
    }
    src.disconnect();
    const binHz = ac.sampleRate / an.fftSize;
    const dbAt = (i) => (sum[i] > 0 ? 10 * Math.log10(sum[i] / frames) : -Infinity);
    let best = -1;
    let bestP = -1;
    for (let i = Math.ceil(minHz / binHz); i < bins; i++) {
      if (sum[i] > bestP) {
        bestP = sum[i];
        best = i;
      }
    }
    // Level at a frequency: the strongest of the 3 bins around it (window leakage).
    const levels = {};
    for (const f of freqs) {
      const c = Math.round(f / binHz);
      let p = 0;
      for (let i = Math.max(0, c - 1); i <= Math.min(bins - 1, c + 1); i++) p = Math.max(p, sum[i]);
      levels[String(f)] = p > 0 ? 10 * Math.log10(p / frames) : -999;
    }
    const fin = (x) => (Number.isFinite(x) ? x : -999);
    return {
      dominantHz: best >= 0 ? best * binHz : 0,
      dominantDb: fin(dbAt(best)),
      rmsDb: fin(n ? 10 * Math.log10(sq / n) : -Infinity),
      sampleRate: ac.sampleRate,
      binHz,
      frames,
      levels,
    };
  }

  // audioStats returns the audio inbound-rtp and outbound-rtp counters of pc:
  //   {packetsReceived, bytesReceived, packetsLost, jitter, audioLevel, totalAudioEnergy,
  //    packetsSent, bytesSent, codec}
  async function audioStats(pc) {
    const out = {
      packetsReceived: 0, bytesReceived: 0, packetsLost: 0, jitter: 0, audioLevel: 0,
      totalAudioEnergy: 0, packetsSent: 0, bytesSent: 0, codec: "",
    };
    const stats = await pc.getStats();
    const codecs = {};
    stats.forEach((s) => {
      if (s.type === "codec") codecs[s.id] = s.mimeType;
    });
    stats.forEach((s) => {
      const kind = s.kind || s.mediaType;
      if (kind !== "audio") return;
      if (s.type === "inbound-rtp") {
        out.packetsReceived += s.packetsReceived || 0;
        out.bytesReceived += s.bytesReceived || 0;
        out.packetsLost += s.packetsLost || 0;
        out.jitter = Math.max(out.jitter, s.jitter || 0);
        out.audioLevel = Math.max(out.audioLevel, s.audioLevel || 0);
        out.totalAudioEnergy += s.totalAudioEnergy || 0;
        if (s.codecId && codecs[s.codecId]) out.codec = codecs[s.codecId];
      } else if (s.type === "outbound-rtp") {
        out.packetsSent += s.packetsSent || 0;
        out.bytesSent += s.bytesSent || 0;
      }
    });
    return out;
  }

  // --- minimal control API client (NkMEDIA External Interface over WebSocket) -----------------
  //
  //   const api = new nkb.ApiClient("ws://127.0.0.1:9010/", {onEvent: (ev) => ..., onRequest});
  //   await api.open();
  //   const {session_id} = await api.login("user", "pass");
  //   const r = await api.send("media", "session", "start", {type: "echo", offer: {sdp}});
  //
  // send resolves with the response's data on "ok" and rejects with an Error carrying .code
  // and .data on "error"; acks extend the wait. Server requests are answered {"result":"ok"}
  // (after onRequest(msg) if given; if it returns {result, data} that is sent instead; if it
  // returns a Promise, the client acks first and answers when it resolves). Events (core/event)
  // go to onEvent(data) and are also kept in api.events.
  class ApiClient {
    constructor(url, opts = {}) {
      this.url = url;
      this.opts = opts;
      this.tid = 0;
      this.pending = new Map();
      this.events = [];
      this.requests = [];
      this.ws = null;
      this.closed = null;
    }

    open(timeoutMs = 5000) {
      return new Promise((resolve, reject) => {
        const ws = new WebSocket(this.url);
        this.ws = ws;
        const t = setTimeout(() => reject(new Error("nkb.ApiClient: connect timeout")), timeoutMs);
        ws.onopen = () => {
          clearTimeout(t);
          resolve(this);
        };
        ws.onerror = () => {
          clearTimeout(t);
          reject(new Error("nkb.ApiClient: websocket error"));
        };
        ws.onclose = (e) => {
          this.closed = { code: e.code, reason: e.reason };
          for (const p of this.pending.values()) p.reject(new Error(`nkb.ApiClient: closed (${e.code} ${e.reason})`));
          this.pending.clear();
          if (this.opts.onClose) this.opts.onClose(e);
        };
        ws.onmessage = (e) => this._onMessage(e.data);
      });
    }

    _onMessage(text) {
      let msg;
      try {
        msg = JSON.parse(text);
      } catch (e) {
        console.error("nkb.ApiClient: bad JSON from server: " + text);
        return;
      }
      if (msg.cmd !== undefined && msg.class !== undefined) {
        this._onRequest(msg);
        return;
      }
      if (msg.ack !== undefined) {
        // {"ack": tid} extends that request's wait; an ack naming no pending tid extends all.
        const one = this.pending.get(msg.ack);
        if (one) one.extend();
        else for (const p of this.pending.values()) p.extend();
        return;
      }
      const p = this.pending.get(msg.tid);
      if (!p) {
        console.warn("nkb.ApiClient: response for unknown tid " + msg.tid);
        return;
      }
      this.pending.delete(msg.tid);
      if (msg.result === "ok") p.resolve(msg.data || {});
      else {
        const d = msg.data || {};
        const err = new Error(`${d.code} ${d.error}`);
        err.code = d.code;
        err.data = d;
        p.reject(err);
      }
    }

    async _onRequest(msg) {
      this.requests.push(msg);
      if (msg.class === "core" && msg.cmd === "event") {
        this.events.push(msg.data);
        if (this.opts.onEvent) {
          try {
            this.opts.onEvent(msg.data, msg);
          } catch (e) {
            console.error("nkb.ApiClient onEvent: " + e);
          }
        }
      }
      let reply = { result: "ok" };
      if (this.opts.onRequest && !(msg.class === "core" && msg.cmd === "ping")) {
        try {
          let r = this.opts.onRequest(msg);
          if (r && typeof r.then === "function") {
            this._raw({ ack: msg.tid });
            r = await r;
          }
          if (r && r.result) reply = r;
        } catch (e) {
          reply = { result: "error", data: { code: 1000, error: String(e) } };
        }
      }
      reply.tid = msg.tid;
      this._raw(reply);
    }

    _raw(obj) {
      if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(obj));
    }

    // send a request; resolves with response data. subclass may be null for core.
    send(cls, subclass, cmd, data = {}, timeoutMs = 10000) {
      const tid = ++this.tid;
      const msg = { class: cls, cmd, data, tid };
      if (subclass) msg.subclass = subclass;
      return new Promise((resolve, reject) => {
        let t;
        const arm = () => {
          clearTimeout(t);
          t = setTimeout(() => {
            this.pending.delete(tid);
            reject(new Error(`nkb.ApiClient: no answer to ${cls}/${subclass || "core"}/${cmd} in ${timeoutMs} ms`));
          }, timeoutMs);
        };
        arm();
        this.pending.set(tid, {
          resolve: (d) => (clearTimeout(t), resolve(d)),
          reject: (e) => (clearTimeout(t), reject(e)),
          extend: arm,
        });
        this._raw(msg);
      });
    }

    login(user, password, extra = {}) {
      return this.send("core", "user", "login", { user, password, ...extra });
    }

    // waitEvent resolves with the first event (already received or future) for which
    // match(eventData) is true.
    waitEvent(match, timeoutMs = 10000) {
      return waitFor(() => this.events.find(match), timeoutMs, 20, "API event");
    }

    close() {
      if (this.ws) this.ws.close();
    }
  }

  const nkb = {
    sleep,
    waitFor,
    getUserMedia,
    rewriteCandidate,
    loopbackSDP,
    candidateInit,
    waitIceComplete,
    localSDP,
    newPC,
    installLoopbackPC,
    playRemote,
    keepLastStream,
    heardStream,
    measureAudio,
    audioStats,
    ApiClient,
  };
  window.nkb = nkb;
  if (window.nkbAutoLoopbackPC) installLoopbackPC();
})();
