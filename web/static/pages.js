// Shared code of the demo pages (room.html, agent.html, operator.html): the login bar, the
// audio source (microphone or a test tone), level meters, the event log and error texts that
// tell a newcomer which setting to change. Plain ES module on nkbridge.js, no build step.
import { NkbClient, ApiError, defaultURL, gatheredDescription } from "./nkbridge.js";

export { gatheredDescription };

export const $ = (id) => document.getElementById(id);

// Hints for error codes whose server text does not say what to do.
const hints = {
  1030: "wrong user or password",
  1061: "the server is stopping or draining: try again later",
  2001: "no media backend serves this on this server (see docs/OPERATIONS.md, media backends)",
  2002: "the server does not know this session type",
  2021: "the other side declined",
  2022: "nobody by that name is reachable",
  2023: "no answer",
};

/** describe turns an error into the text a page shows: the API code, the server's text (which
 *  names the setting to change when a default blocks the request) and a hint. */
export function describe(e) {
  if (e instanceof ApiError) {
    const hint = hints[e.code];
    // A text naming a setting (sip.sip_callers, users[].admin...) says it all: no generic hint.
    return `${e.code} ${e.text}${hint && !/\b[a-z_]+(\[\])?\.[a-z_]+\b/.test(e.text) ? " — " + hint : ""}`;
  }
  return String((e && e.message) || e);
}

/** showError shows text in the element id (hidden when empty) and logs it. */
export function showError(id, text) {
  const el = $(id);
  if (!el) return;
  el.textContent = text;
  el.hidden = !text;
  if (text) log("err", text);
}

/** log appends a line to the page's event log (an <ol id="log">), if it has one. */
export function log(kind, text, obj) {
  const ol = $("log");
  if (!ol) return;
  const li = document.createElement("li");
  li.className = kind;
  const t = new Date().toISOString().slice(11, 23);
  const short = (k, v) => (k === "sdp" && typeof v === "string" ? `<${v.length} bytes of SDP>` : v);
  li.textContent = `${t} ${text}${obj !== undefined ? " " + JSON.stringify(obj, short) : ""}`;
  ol.appendChild(li);
  while (ol.children.length > 300) ol.removeChild(ol.firstChild);
  ol.scrollTop = ol.scrollHeight;
}

let audioCtx = null;
function ctx() {
  if (!audioCtx) audioCtx = new AudioContext();
  if (audioCtx.state === "suspended") audioCtx.resume();
  return audioCtx;
}

/** audioSource returns the stream the page sends, from the login bar's "audio" choice: the
 *  microphone (processed or raw) or a test tone of the given frequency (-12 dBFS sine). */
export async function audioSource() {
  const kind = $("source") ? $("source").value : "mic";
  if (kind === "tone") {
    const c = ctx();
    const osc = c.createOscillator();
    osc.frequency.value = Number($("tone-hz").value) || 440;
    const gain = c.createGain();
    gain.gain.value = 0.25;
    const dst = c.createMediaStreamDestination();
    osc.connect(gain).connect(dst);
    osc.start();
    const track = dst.stream.getAudioTracks()[0];
    track.addEventListener("ended", () => osc.stop());
    const stop = track.stop.bind(track);
    track.stop = () => {
      stop();
      try {
        osc.stop();
      } catch {
        /* stopped */
      }
    };
    return dst.stream;
  }
  const audio = kind === "raw" ? { echoCancellation: false, noiseSuppression: false, autoGainControl: false } : true;
  return navigator.mediaDevices.getUserMedia({ audio, video: false });
}

/** meter measures a stream's level (RMS, 0..1 scaled like the demo page) ten times a second,
 *  calling show(level); returns a function that stops. */
export function meter(stream, show) {
  const c = ctx();
  const src = c.createMediaStreamSource(stream);
  const an = c.createAnalyser();
  an.fftSize = 1024;
  src.connect(an);
  const buf = new Float32Array(an.fftSize);
  const timer = setInterval(() => {
    an.getFloatTimeDomainData(buf);
    let sq = 0;
    for (const x of buf) sq += x * x;
    show(Math.min(1, Math.sqrt(sq / buf.length) * 3));
  }, 100);
  return () => {
    clearInterval(timer);
    src.disconnect();
    show(0);
  };
}

/** newPC is an RTCPeerConnection with no ICE servers (nkbridge is reached directly). */
export function newPC() {
  const pc = new RTCPeerConnection();
  pc.addEventListener("connectionstatechange", () => log("in", `webrtc ${pc.connectionState}`));
  return pc;
}

/** Login wires the login bar (#login-form with #server, #user, #password; #conn-status,
 *  #logout, #login-error) to a client. onLogin(client) runs after a successful login,
 *  onClose(detail) when the connection ends. */
export function setupLogin({ onLogin, onClose }) {
  const st = { client: null };
  $("server").value = defaultURL();
  const src = $("source");
  if (src) {
    const tone = () => ($("tone-hz").hidden = src.value !== "tone");
    src.addEventListener("change", tone);
    src.addEventListener("input", tone);
    tone();
  }
  const update = () => {
    const c = st.client;
    const logged = !!(c && c.user && c.connected);
    $("conn-status").textContent = logged ? `logged in as ${c.user}` : c && c.connected ? "connected" : "disconnected";
    $("conn-status").className = "badge " + (logged ? "on" : "off");
    $("login").disabled = logged;
    $("logout").disabled = !logged;
  };
  $("login-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    showError("login-error", "");
    const url = $("server").value.trim() || defaultURL();
    const c = new NkbClient(url);
    st.client = c;
    c.addEventListener("close", (e) => {
      const d = e.detail;
      log("err", `connection closed (${d.code}${d.reason ? " " + d.reason : ""})`);
      // A refusal the server explains in the close reason (an Origin not allowed...).
      if (d.reason && !c.user) showError("login-error", `Connection refused: ${d.reason}`);
      update();
      if (onClose) onClose(d);
    });
    try {
      await c.connect();
      log("out", `connected to ${url}`);
      const r = await c.login($("user").value.trim(), $("password").value);
      log("in", "logged in", r);
      update();
      if (onLogin) await onLogin(c);
    } catch (e) {
      // Wait briefly for a close that explains the failure (the server names the setting).
      await new Promise((r) => setTimeout(r, 300));
      if ($("login-error").hidden) showError("login-error", `Login failed: ${describe(e)}`);
      c.close();
    }
    update();
  });
  $("logout").addEventListener("click", () => {
    if (st.client) st.client.close();
    update();
  });
  update();
  return st;
}
