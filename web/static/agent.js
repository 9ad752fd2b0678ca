// The agent console: calls to the logged-in agent (from SIP trunks and phones, other agents,
// Verto) ring here; answer, hold and resume, send DTMF, transfer the caller (media/call/
// transfer: to another agent, a SIP URL or a Verto login), hang up; the page keeps a history of
// its session's calls. Built only on nkbridge.js; plain ES module, no build step.
//
// Hold is done in the page: the agent's audio is replaced by silence (the call's RTP keeps
// flowing, so no media timeout) and the caller's audio is not played. The control API has no
// callee-side hold toward the SIP caller (no re-INVITE is sent).
import { $, log, describe, showError, audioSource, meter, newPC, setupLogin, gatheredDescription } from "./pages.js";

// window.agent exposes the page's state (for the console and for tests).
const agent = (window.agent = {
  client: null,
  ringing: new Map(), // call id -> {inv, li, at}
  call: null, // {inv, callId, pc, stream, remote, who, answeredAt, held, stopMeter, timer}
  history: [], // {at, from, outcome, talked, end}
  dtmf: "",
  level: 0,
  source: null, // the page's audio source, shared by calls (each gets its own clone)
});

setupLogin({
  onLogin: (c) => {
    agent.client = c;
    c.addEventListener("invite", (e) => ringing(e.detail));
    c.on({ class: "media", subclass: "call", type: "hangup" }, (ev) => {
      const c = agent.call;
      if (!c || c.callId !== ev.obj_id) return;
      const b = ev.body || {};
      if (c.transferring && /^Transferred/.test(b.reason || b.error || "")) c.transferred = c.transferring;
      endCall(b);
    });
    update();
  },
  onClose: () => {
    for (const r of agent.ringing.values()) missed(r, { code: 1012, reason: "connection closed" });
    if (agent.call) endCall({ code: 1012, reason: "connection closed" });
    update();
  },
});

function who(inv) {
  const name = inv.callerName || "";
  const id = inv.callerId || inv.callerUser || "";
  if (name && id && name !== id) return `${name} <${id}>`;
  return name || id || "unknown caller";
}

function update() {
  const c = agent.call;
  $("hold").disabled = !c;
  $("hangup").disabled = !c;
  $("hold").textContent = c && c.held ? "Resume" : "Hold";
  $("hold").classList.toggle("held", !!(c && c.held));
  $("hold").setAttribute("aria-pressed", String(!!(c && c.held)));
  $("transfer").disabled = !c || !c.answeredAt || !!c.transferring;
  for (const b of document.querySelectorAll("#keypad button")) b.disabled = !c || c.held;
  $("ringing-count").textContent = String(agent.ringing.size);
  $("no-ringing").hidden = agent.ringing.size > 0;
  for (const r of agent.ringing.values()) r.li.querySelector(".answer").disabled = !!c;
}

// ---- ringing calls

function ringing(inv) {
  const li = document.createElement("li");
  li.dataset.call = inv.callId;
  const span = document.createElement("span");
  span.className = "who";
  span.textContent = who(inv);
  const answer = document.createElement("button");
  answer.className = "answer";
  answer.textContent = "Answer";
  const reject = document.createElement("button");
  reject.className = "reject";
  reject.textContent = "Reject";
  li.append(span, answer, reject);
  $("ringing").appendChild(li);
  const r = { inv, li, at: new Date() };
  agent.ringing.set(inv.callId, r);
  answer.addEventListener("click", () => accept(r));
  reject.addEventListener("click", () => decline(r));
  inv.addEventListener("hangup", (e) => {
    if (agent.ringing.has(inv.callId)) missed(r, e.detail || {});
  });
  inv.ringing().catch((e) => log("err", `ringing: ${describe(e)}`));
  log("in", `incoming call from ${who(inv)}`, { call_id: inv.callId });
  update();
}

function unring(r) {
  agent.ringing.delete(r.inv.callId);
  r.li.remove();
  update();
}

function missed(r, body) {
  unring(r);
  record(r.at, who(r.inv), "missed", 0, body);
}

async function decline(r) {
  unring(r);
  try {
    await r.inv.reject({ reason: "Declined by agent" });
  } catch (e) {
    log("err", `reject: ${describe(e)}`);
  }
  record(r.at, who(r.inv), "rejected", 0, { code: 2021, reason: "Declined by agent" });
}

async function accept(r) {
  if (agent.call) return;
  unring(r);
  showError("call-error", "");
  const inv = r.inv;
  const c = { inv, callId: inv.callId, who: who(inv), at: r.at, held: false };
  agent.call = c;
  update();
  $("call-status").textContent = "answering…";
  $("call-with").textContent = c.who;
  try {
    if (!inv.offer || !inv.offer.sdp) throw new Error("the call carries no offer");
    if (!agent.source) agent.source = await audioSource();
    c.stream = new MediaStream(agent.source.getAudioTracks().map((t) => t.clone()));
    c.pc = newPC();
    c.pc.addEventListener("track", (e) => {
      c.remote = e.streams[0] || new MediaStream([e.track]);
      const el = $("call-audio");
      el.srcObject = c.remote;
      el.muted = c.held;
      el.play().catch(() => {});
      c.stopMeter = meter(c.remote, (v) => {
        agent.level = c.held ? 0 : v;
        $("call-level").value = agent.level;
      });
    });
    await c.pc.setRemoteDescription({ type: "offer", sdp: inv.offer.sdp });
    for (const t of c.stream.getTracks()) c.pc.addTrack(t, c.stream);
    await c.pc.setLocalDescription(await c.pc.createAnswer());
    const answer = await gatheredDescription(c.pc);
    await inv.accept({ sdp: answer.sdp });
    if (agent.call !== c) return; // hung up meanwhile
    c.answeredAt = Date.now();
    c.timer = setInterval(tick, 1000);
    $("call-status").textContent = "in call";
    tick();
    log("out", "answered", { call_id: c.callId });
  } catch (e) {
    showError("call-error", `Answer failed: ${describe(e)}`);
    if (agent.call === c) {
      inv.hangup({ reason: "Answer failed" }).catch(() => {});
      endCall({ code: 9999, reason: "answer failed" });
    }
  }
  update();
}

function tick() {
  const c = agent.call;
  if (!c || !c.answeredAt) return;
  $("call-timer").textContent = fmtDuration(Date.now() - c.answeredAt);
}

function fmtDuration(ms) {
  const s = Math.round(ms / 1000);
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
}

// ---- the current call

function setHold(held) {
  const c = agent.call;
  if (!c) return;
  c.held = held;
  for (const t of c.stream.getAudioTracks()) t.enabled = !held; // a disabled track sends silence
  $("call-audio").muted = held;
  $("call-status").textContent = held ? "on hold" : "in call";
  log("out", held ? "hold" : "resume");
  update();
}

async function hangup() {
  const c = agent.call;
  if (!c) return;
  try {
    await c.inv.hangup({ reason: "Agent hangup" });
  } catch (e) {
    log("err", `hangup: ${describe(e)}`);
  }
  endCall({ code: 1013, reason: "Agent hangup" });
}

function endCall(body) {
  const c = agent.call;
  if (!c) return;
  agent.call = null;
  clearInterval(c.timer);
  if (c.stopMeter) c.stopMeter();
  if (c.stream) for (const t of c.stream.getTracks()) t.stop();
  if (c.pc) c.pc.close();
  $("call-audio").srcObject = null;
  $("call-audio").muted = false;
  $("call-timer").textContent = "";
  $("call-with").textContent = "";
  const talked = c.answeredAt ? Date.now() - c.answeredAt : 0;
  $("call-status").textContent = `call ended: ${body.code || ""} ${body.reason || body.error || ""}`.trim();
  record(c.at, c.who, c.transferred ? "transferred" : c.answeredAt ? "answered" : "failed", talked, body);
  log("in", "call ended", body);
  update();
}

// transfer hands the caller to another agent, a SIP URL or a Verto login: the reply comes
// once the target answered, then our call ends ("Transferred"); on failure our call goes on.
async function transfer(ev) {
  ev.preventDefault();
  const c = agent.call;
  const target = $("transfer-to").value.trim();
  if (!c || !target) return;
  showError("call-error", "");
  c.transferring = target;
  $("call-status").textContent = `transferring to ${target}…`;
  update();
  try {
    const r = await c.inv.transfer(target);
    c.transferred = target;
    log("in", `transferred to ${target}`, r);
    if (agent.call === c) endCall({ code: 1013, reason: `Transferred to ${target}` });
  } catch (e) {
    showError("call-error", `Transfer to ${target} failed: ${describe(e)}`);
    if (agent.call === c) $("call-status").textContent = c.held ? "on hold" : "in call";
  }
  c.transferring = null;
  update();
}

function dtmf(digit) {
  const c = agent.call;
  const sender = c && c.pc && c.pc.getSenders().find((s) => s.track && s.track.kind === "audio");
  if (!sender || !sender.dtmf) return;
  if (!sender.dtmf.ontonechange) {
    sender.dtmf.ontonechange = (e) => {
      if (e.tone) {
        agent.dtmf += e.tone;
        $("dtmf-sent").textContent = agent.dtmf;
      }
    };
  }
  if (!sender.dtmf.canInsertDTMF) {
    showError("call-error", "DTMF: the caller's side did not negotiate telephone-event");
    return;
  }
  sender.dtmf.insertDTMF(sender.dtmf.toneBuffer + digit, 120, 70);
  log("out", `dtmf ${digit}`);
}

// ---- history

function record(at, from, outcome, talked, body) {
  const h = { at: at.toISOString(), from, outcome, talked: Math.round(talked / 1000), end: `${body.code || ""} ${body.reason || body.error || ""}`.trim() };
  agent.history.push(h);
  const tr = document.createElement("tr");
  tr.className = outcome;
  for (const v of [at.toLocaleTimeString(), from, outcome, talked ? fmtDuration(talked) : "–", h.end]) {
    const td = document.createElement("td");
    td.textContent = v;
    tr.appendChild(td);
  }
  $("history").prepend(tr);
}

$("hold").addEventListener("click", () => setHold(!(agent.call && agent.call.held)));
$("hangup").addEventListener("click", hangup);
$("transfer-form").addEventListener("submit", transfer);
$("log-clear").addEventListener("click", () => ($("log").textContent = ""));
for (const b of document.querySelectorAll("#keypad button")) b.addEventListener("click", () => dtmf(b.dataset.digit));
update();
log("in", "page ready");
