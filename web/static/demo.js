// The nkbridge demo page: log in, echo test with a level meter, calls out and in, DTMF keypad,
// live event log. Built only on nkbridge.js; plain ES module, no build step.
import { NkbClient, ApiError, defaultURL, gatheredDescription } from "./nkbridge.js";

const $ = (id) => document.getElementById(id);

// window.demo exposes the page's state (handy in the console, and for tests).
const demo = (window.demo = {
  client: null,
  echo: null, // {pc, stream, sessionId, remote}
  call: null, // {role, pc, stream, sessionId?, callId, remote, answered}
  invite: null, // pending Invite
  levels: { echo: 0, call: 0 },
  peaks: { echo: 0, call: 0 },
  dtmf: "", // digits the browser played out as RFC 4733 events
  dtmfHeard: "", // digits nkbridge's media reported receiving (media/session/info {info: {dtmf}})
  remoteStream: null,
});

const hints = {
  2001: "no media backend serves this session type on this server (see the operations guide: media backends)",
  2002: "the server does not know this session type",
  1030: "wrong user or password",
  1061: "the server is stopping or draining: try again later",
  2022: "nobody by that name is reachable",
  2021: "the other side declined",
  2023: "no answer",
};

function describe(e) {
  if (e instanceof ApiError) {
    const hint = hints[e.code];
    // A text naming a setting (sip.sip_callers...) says it all: no generic hint.
    return `${e.code} ${e.text}${hint && !/\b[a-z_]+\.[a-z_]+\b/.test(e.text) ? " — " + hint : ""}`;
  }
  return String((e && e.message) || e);
}

// ---- event log

function log(kind, text, obj) {
  const li = document.createElement("li");
  li.className = kind;
  const t = new Date().toISOString().slice(11, 23);
  const short = (k, v) => (k === "sdp" && typeof v === "string" ? `<${v.length} bytes of SDP>` : v);
  li.textContent = `${t} ${text}${obj !== undefined ? " " + JSON.stringify(obj, short) : ""}`;
  const ol = $("log");
  ol.appendChild(li);
  while (ol.children.length > 500) ol.removeChild(ol.firstChild);
  ol.scrollTop = ol.scrollHeight;
}

function showError(id, text) {
  const el = $(id);
  el.textContent = text;
  el.hidden = !text;
  if (text) log("err", `${id.replace("-error", "")}: ${text}`);
}

// ---- UI state

function update() {
  const logged = !!(demo.client && demo.client.user && demo.client.connected);
  const busy = !!(demo.call || demo.invite);
  $("conn-status").textContent = logged ? `logged in as ${demo.client.user}` : demo.client && demo.client.connected ? "connected" : "disconnected";
  $("conn-status").className = "badge " + (logged ? "on" : "off");
  $("login").disabled = logged;
  $("logout").disabled = !logged;
  $("echo-start").disabled = !logged || !!demo.echo;
  $("echo-stop").disabled = !demo.echo;
  $("call").disabled = !logged || busy;
  $("hangup").disabled = !demo.call;
  $("incoming").hidden = !demo.invite;
  for (const b of document.querySelectorAll("#keypad button")) b.disabled = !(demo.call || demo.echo);
}

// ---- media helpers

function microphone() {
  const raw = $("raw-mic").checked;
  const audio = raw ? { echoCancellation: false, noiseSuppression: false, autoGainControl: false } : true;
  return navigator.mediaDevices.getUserMedia({ audio, video: false });
}

function newPC(onRemote) {
  const pc = new RTCPeerConnection();
  pc.addEventListener("track", (e) => onRemote(e.streams[0] || new MediaStream([e.track])));
  pc.addEventListener("connectionstatechange", () => log("in", `webrtc ${pc.connectionState}`));
  return pc;
}

let audioCtx = null;
// meter shows the level of a stream in a <meter>: RMS of the waveform, 10 times a second.
function meter(stream, key) {
  if (!audioCtx) audioCtx = new AudioContext();
  if (audioCtx.state === "suspended") audioCtx.resume();
  const src = audioCtx.createMediaStreamSource(stream);
  const an = audioCtx.createAnalyser();
  an.fftSize = 2048;
  src.connect(an);
  const buf = new Float32Array(an.fftSize);
  const timer = setInterval(() => {
    an.getFloatTimeDomainData(buf);
    let sq = 0;
    for (const x of buf) sq += x * x;
    const rms = Math.sqrt(sq / buf.length);
    const level = Math.min(1, rms * 3); // a -12 dBFS tone shows about 2/3
    demo.levels[key] = level;
    demo.peaks[key] = Math.max(demo.peaks[key], level);
    $(`${key}-level`).value = level;
    $(`${key}-level-text`).textContent = level.toFixed(2);
  }, 100);
  return () => {
    clearInterval(timer);
    src.disconnect();
    demo.levels[key] = 0;
    $(`${key}-level`).value = 0;
    $(`${key}-level-text`).textContent = "0.00";
  };
}

function playRemote(stream) {
  demo.remoteStream = stream;
  const el = $("remote-audio");
  el.srcObject = stream;
  el.play().catch(() => {});
}

function release(m) {
  if (!m) return;
  if (m.stopMeter) m.stopMeter();
  if (m.stream) for (const t of m.stream.getTracks()) t.stop();
  if (m.pc) m.pc.close();
  if (m.off) for (const f of m.off) f();
  if ($("remote-audio").srcObject === m.remote) $("remote-audio").srcObject = null;
}

// ---- login

async function login(ev) {
  ev.preventDefault();
  showError("login-error", "");
  const url = $("server").value.trim() || defaultURL();
  const c = new NkbClient(url);
  demo.client = c;
  c.addEventListener("event", (e) => log("in", "event", e.detail));
  c.addEventListener("invite", (e) => incoming(e.detail));
  c.addEventListener("close", (e) => {
    log("err", `connection closed (${e.detail.code}${e.detail.reason ? " " + e.detail.reason : ""})`);
    endEcho("connection closed");
    endCall("connection closed");
    demo.invite = null;
    update();
  });
  try {
    await c.connect();
    log("out", `connected to ${url}`);
    const r = await c.login($("user").value.trim(), $("password").value);
    log("in", "logged in", r);
  } catch (e) {
    showError("login-error", `Login failed: ${describe(e)}`);
    c.close();
  }
  update();
}

function logout() {
  if (demo.client) demo.client.close();
  update();
}

// ---- echo test

async function startEcho() {
  showError("echo-error", "");
  $("echo-status").textContent = "starting…";
  const m = { off: [] };
  demo.echo = m;
  update();
  try {
    m.stream = await microphone();
    m.pc = newPC((s) => {
      m.remote = s;
      playRemote(s);
      m.stopMeter = meter(s, "echo");
    });
    for (const t of m.stream.getTracks()) m.pc.addTrack(t, m.stream);
    await m.pc.setLocalDescription(await m.pc.createOffer());
    const offer = await gatheredDescription(m.pc);
    log("out", "media/session/start echo");
    const r = await demo.client.startSession("echo", { offer: { sdp: offer.sdp } });
    m.sessionId = r.session_id;
    log("in", "echo session", { session_id: r.session_id });
    m.off.push(demo.client.on({ class: "media", subclass: "session", type: "stop", obj_id: r.session_id }, (ev) => {
      endEcho(`stopped: ${ev.body && ev.body.code} ${ev.body && ev.body.reason}`);
    }));
    m.off.push(demo.client.on({ class: "media", subclass: "session", type: "info", obj_id: r.session_id }, heardDTMF));
    if (!r.answer || !r.answer.sdp) throw new Error("the server's reply has no answer");
    await m.pc.setRemoteDescription({ type: "answer", sdp: r.answer.sdp });
    $("echo-status").textContent = "running: speak, you should hear yourself";
  } catch (e) {
    showError("echo-error", `Echo test failed: ${describe(e)}`);
    endEcho("failed");
  }
  update();
}

async function stopEcho() {
  const m = demo.echo;
  if (m && m.sessionId) {
    try {
      await demo.client.stopSession(m.sessionId);
    } catch (e) {
      log("err", `stop: ${describe(e)}`);
    }
  }
  endEcho("stopped");
}

function endEcho(why) {
  if (!demo.echo) return;
  release(demo.echo);
  demo.echo = null;
  $("echo-status").textContent = why;
  update();
}

// ---- calls

function callEvents(m) {
  const c = demo.client;
  m.off.push(c.on({ class: "media", subclass: "call" }, (ev) => {
    if (ev.obj_id !== m.callId) return;
    const b = ev.body || {};
    switch (ev.type) {
      case "ringing":
        if (!m.answered) $("call-status").textContent = "ringing…";
        break;
      case "accepted":
      case "answer":
        if (b.answer) answered(m, b.answer);
        break;
      case "rejected":
        $("call-status").textContent = `rejected: ${b.code} ${b.error || ""}`;
        break;
      case "hangup":
        settingError(b);
        endCall(`call ended: ${b.code} ${b.reason || b.error || ""}`);
        break;
    }
  }));
  if (m.sessionId) {
    m.off.push(c.on({ class: "media", subclass: "session", obj_id: m.sessionId }, (ev) => {
      const b = ev.body || {};
      if (ev.type === "answer" && b.answer) answered(m, b.answer);
      if (ev.type === "info") heardDTMF(ev);
      if (ev.type === "stop") endCall(`call ended: ${b.code} ${b.reason || ""}`);
    }));
  }
}

// settingError shows a call's end as an error when the server's text names a setting that
// blocks it (sip.sip_callers, sip.outbound_domains, ...): that is for the person to fix.
function settingError(b) {
  const text = b.reason || b.error || "";
  if (/\b[a-z_]+\.[a-z_]+\b/.test(text)) showError("call-error", `Call failed: ${b.code} ${text}`);
}

async function answered(m, answer) {
  if (m.answered || demo.call !== m) return;
  m.answered = true;
  try {
    await m.pc.setRemoteDescription({ type: "answer", sdp: answer.sdp });
    $("call-status").textContent = "in call";
  } catch (e) {
    showError("call-error", `Bad answer: ${describe(e)}`);
    hangup();
  }
}

async function startCall(ev) {
  ev.preventDefault();
  showError("call-error", "");
  const type = $("call-type").value;
  const callee = $("callee").value.trim();
  const m = { role: "caller", off: [] };
  demo.call = m;
  update();
  $("call-status").textContent = `calling ${callee}…`;
  try {
    m.stream = await microphone();
    m.pc = newPC((s) => {
      m.remote = s;
      playRemote(s);
      m.stopMeter = meter(s, "call");
    });
    for (const t of m.stream.getTracks()) m.pc.addTrack(t, m.stream);
    await m.pc.setLocalDescription(await m.pc.createOffer());
    const offer = await gatheredDescription(m.pc);
    // SIP phones speak plain RTP: calls to a SIP URL go through nkbridge's media (a proxy
    // session, WebRTC here and RTP there). Other calls are browser to browser (p2p).
    const s = type === "sip"
      ? await demo.client.startSession("proxy", { offer: { sdp: offer.sdp }, proxy_type: "rtp" })
      : await demo.client.startSession("p2p", { offer: { sdp: offer.sdp } });
    m.sessionId = s.session_id;
    callEvents(m);
    const r = await demo.client.startCall({
      type, callee, session_id: m.sessionId,
      offer: { sdp: offer.sdp, caller_name: demo.client.user, caller_id: demo.client.user },
    });
    m.callId = r.call_id;
    log("out", "call started", { call_id: r.call_id, type, callee });
  } catch (e) {
    showError("call-error", `Call failed: ${describe(e)}`);
    if (m.sessionId) demo.client.stopSession(m.sessionId).catch(() => {});
    endCall("call failed");
  }
}

async function hangup() {
  const m = demo.call;
  if (!m) return;
  if (m.callId) {
    try {
      await demo.client.hangup(m.callId);
    } catch (e) {
      log("err", `hangup: ${describe(e)}`);
    }
  }
  endCall("hung up");
}

function endCall(why) {
  const m = demo.call;
  if (!m) return;
  release(m);
  demo.call = null;
  $("call-status").textContent = why;
  log("in", why);
  update();
}

function incoming(inv) {
  const who = inv.callerName || inv.callerId || inv.callerUser || "unknown";
  log("in", `incoming call from ${who}`, { call_id: inv.callId });
  if (demo.call || demo.invite) {
    inv.reject({ code: 2021, reason: "Busy" }).catch(() => {});
    return;
  }
  demo.invite = inv;
  $("incoming-from").textContent = who;
  inv.addEventListener("hangup", (e) => {
    if (demo.invite === inv) {
      demo.invite = null;
      $("call-status").textContent = `missed call from ${who}: ${e.detail.code} ${e.detail.reason || e.detail.error || ""}`;
      update();
    }
  });
  inv.ringing().catch((e) => log("err", `ringing: ${describe(e)}`));
  $("call-status").textContent = `ringing: ${who}`;
  update();
}

async function accept() {
  const inv = demo.invite;
  if (!inv) return;
  demo.invite = null;
  showError("call-error", "");
  const m = { role: "callee", off: [], callId: inv.callId, answered: true };
  demo.call = m;
  update();
  try {
    if (!inv.offer || !inv.offer.sdp) throw new Error("the invite carries no offer");
    m.stream = await microphone();
    m.pc = newPC((s) => {
      m.remote = s;
      playRemote(s);
      m.stopMeter = meter(s, "call");
    });
    await m.pc.setRemoteDescription({ type: "offer", sdp: inv.offer.sdp });
    for (const t of m.stream.getTracks()) m.pc.addTrack(t, m.stream);
    await m.pc.setLocalDescription(await m.pc.createAnswer());
    const answer = await gatheredDescription(m.pc);
    callEvents(m);
    await inv.accept({ sdp: answer.sdp }); // later style: media/call/answered
    log("out", "call accepted", { call_id: inv.callId });
    $("call-status").textContent = "in call";
  } catch (e) {
    showError("call-error", `Accept failed: ${describe(e)}`);
    endCall("accept failed");
  }
}

async function reject() {
  const inv = demo.invite;
  if (!inv) return;
  demo.invite = null;
  update();
  try {
    await inv.reject({ style: "event", reason: "Declined" }); // seed style: core/event rejected
    $("call-status").textContent = "call rejected";
    log("out", "call rejected", { call_id: inv.callId });
  } catch (e) {
    showError("call-error", `Reject failed: ${describe(e)}`);
  }
}

// ---- DTMF (RFC 4733 through the browser's RTCDTMFSender)

// heardDTMF shows digits the server's media received (sessions with a media backend).
function heardDTMF(ev) {
  const info = (ev.body && ev.body.info) || {};
  if (info.dtmf) {
    demo.dtmfHeard += info.dtmf;
    $("dtmf-heard").textContent = demo.dtmfHeard;
  }
}

function dtmf(digit) {
  const m = demo.call || demo.echo;
  const sender = m && m.pc && m.pc.getSenders().find((s) => s.track && s.track.kind === "audio");
  if (!sender || !sender.dtmf) {
    showError("call-error", "DTMF: no active call");
    return;
  }
  if (!sender.dtmf.ontonechange) {
    sender.dtmf.ontonechange = (e) => {
      if (e.tone) {
        demo.dtmf += e.tone;
        $("dtmf-sent").textContent = demo.dtmf;
      }
    };
  }
  if (!sender.dtmf.canInsertDTMF) {
    showError("call-error", "DTMF: the far end did not negotiate telephone-event");
    return;
  }
  sender.dtmf.insertDTMF(sender.dtmf.toneBuffer + digit, 120, 70);
  log("out", `dtmf ${digit}`);
}

// ---- wiring

$("server").value = defaultURL();
$("login-form").addEventListener("submit", login);
$("logout").addEventListener("click", logout);
$("echo-start").addEventListener("click", startEcho);
$("echo-stop").addEventListener("click", stopEcho);
$("call-form").addEventListener("submit", startCall);
$("hangup").addEventListener("click", hangup);
$("accept").addEventListener("click", accept);
$("reject").addEventListener("click", reject);
$("log-clear").addEventListener("click", () => ($("log").textContent = ""));
for (const b of document.querySelectorAll("#keypad button")) b.addEventListener("click", () => dtmf(b.dataset.digit));
update();
log("in", "page ready");
