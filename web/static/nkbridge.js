// nkbridge.js — a small ES-module client for the nkbridge control API (the NkMEDIA External
// Interface over WebSocket). No dependencies, no build step:
//
//   import { NkbClient } from "/demo/nkbridge.js";
//   const nkb = new NkbClient();                    // ws(s)://<this host>/api
//   await nkb.connect();
//   await nkb.login("alice@example.com", "secret");
//   nkb.addEventListener("invite", (e) => e.detail.accept(answer));   // incoming calls
//   nkb.on({ class: "media", subclass: "call", type: "hangup" }, (ev) => ...);
//   const { session_id, answer } = await nkb.startSession("echo", { offer: { sdp } });
//
// Everything the server asks is answered for you: pings, events (dispatched as "event"),
// call invites (answered "ok" at once, then dispatched as "invite" with an Invite object whose
// ringing / accept / reject / hangup report progress, in the later "command" style by default
// or the seed "event" style). A request resolves with the reply's data or rejects with an
// ApiError carrying the API error code; an {"ack": tid} from the server extends its deadline.
//
// Events dispatched (EventTarget, the payload in event.detail):
//   "event"   {class, subclass, type, obj_id, body}     every core/event the server delivers
//   "invite"  Invite                                     an incoming media/call/invite
//   "request" {class, subclass, cmd, data, tid}          any other server request (answered ok)
//   "close"   {code, reason}                             the WebSocket closed

/** ApiError is an error reply of the API: `code` is the numeric API code (1041, 2001, ...). */
export class ApiError extends Error {
  constructor(code, text, data) {
    super(`${code} ${text}`);
    this.name = "ApiError";
    this.code = code;
    this.text = text;
    this.data = data;
  }
}

/** defaultURL is the API address of the page's own server: ws(s)://host/api. */
export function defaultURL(loc = globalThis.location) {
  const scheme = loc.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${loc.host}/api`;
}

/** An incoming call offered to this connection (media/call/invite). */
export class Invite extends EventTarget {
  constructor(client, data) {
    super();
    this.client = client;
    this.callId = data.call_id;
    this.type = data.type;
    this.offer = data.offer || null;
    this.callerName = data.caller_name || (data.offer && data.offer.caller_name) || "";
    this.callerId = data.caller_id || (data.offer && data.offer.caller_id) || "";
    this.callerUser = data.caller_user || "";
    this.data = data;
    /** "ringing" (invited), "accepted", "rejected" or "ended". */
    this.state = "ringing";
    this.endReason = null;
  }

  // report sends a callee progress report in the chosen style.
  _report(kind, body, style) {
    if ((style || this.client.inviteStyle) === "event") {
      const type = kind === "answered" ? "accepted" : kind;
      return this.client.request("core", "", "event",
        { class: "media", subclass: "call", type, obj_id: this.callId, body });
    }
    return this.client.request("media", "call", kind, { call_id: this.callId, ...body });
  }

  /** ringing tells the caller we are alerting (optionally with an early answer). */
  ringing(answer, { style } = {}) {
    return this._report("ringing", answer ? { answer } : {}, style);
  }

  /** accept answers the call with an SDP answer ({sdp} or an RTCSessionDescription). The first
   *  acceptance wins; a late one rejects with ApiError 2024. sessionId links a session of ours. */
  async accept(answer, { style, sessionId } = {}) {
    const body = { answer: descriptor(answer) };
    if (sessionId) body.session_id = sessionId;
    await this._report("answered", body, style);
    this.state = "accepted";
    this.client._calls.add(this.callId);
  }

  /** reject declines the call (default code 2021 call_rejected). */
  async reject({ code, reason, style } = {}) {
    const body = {};
    if (code) body.code = code;
    if (reason) body.error = reason;
    this.state = "rejected";
    await this._report("rejected", body, style);
  }

  /** hangup ends the call (accepted) or declines it (still ringing). */
  hangup({ code, reason } = {}) {
    this.state = "ended";
    return this.client.hangup(this.callId, { code, reason });
  }

  /** transfer moves the caller of this accepted call to target (see NkbClient.transferCall). */
  transfer(target, opts = {}) {
    return this.client.transferCall(this.callId, target, opts);
  }

  _ended(body) {
    if (this.state === "ended") return;
    this.state = "ended";
    this.endReason = body || {};
    this.dispatchEvent(new CustomEvent("hangup", { detail: this.endReason }));
  }
}

/** descriptor turns an RTCSessionDescription (or {sdp}) into the API's {sdp, sdp_type} form. */
export function descriptor(d) {
  if (!d) return d;
  if (typeof d === "string") return { sdp: d };
  const out = {};
  for (const k of Object.keys(d)) if (k !== "type") out[k] = d[k];
  if (d.sdp !== undefined) out.sdp = d.sdp; // RTCSessionDescription fields are getters
  return out;
}

/** NkbClient is one control API connection. */
export class NkbClient extends EventTarget {
  /**
   * @param {string} [url] ws:// or wss:// URL of the API (default: this page's server, /api)
   * @param {object} [opts]
   * @param {number} [opts.requestTimeout=10000] ms to wait for a reply (an ack extends it)
   * @param {number} [opts.ackTimeout=180000]   ms to wait after the server's ack
   * @param {"command"|"event"} [opts.inviteStyle="command"] how Invite reports progress
   * @param {(msg) => any} [opts.onRequest] handles other server requests: return
   *   {result, data} to answer, or a Promise of it (the client acks first)
   */
  constructor(url, opts = {}) {
    super();
    this.url = url || defaultURL();
    this.requestTimeout = opts.requestTimeout ?? 10000;
    this.ackTimeout = opts.ackTimeout ?? 180000;
    this.inviteStyle = opts.inviteStyle || "command";
    this.onRequest = opts.onRequest || null;
    this.ws = null;
    this.user = null;
    this.loginSessionId = null;
    this._tid = 0;
    this._pending = new Map(); // tid -> {resolve, reject, timer}
    this._invites = new Map(); // call_id -> Invite
    this._calls = new Set(); // call ids we started or accepted
    /** What the server sent so far: pings answered, acks received, events, invites. */
    this.counters = { pings: 0, acks: 0, events: 0, invites: 0 };
  }

  /** connected is true while the WebSocket is open. */
  get connected() {
    return !!this.ws && this.ws.readyState === WebSocket.OPEN;
  }

  /** connect opens the WebSocket. */
  connect(timeoutMs = 10000) {
    return new Promise((resolve, reject) => {
      let settled = false;
      const ws = new WebSocket(this.url);
      this.ws = ws;
      const timer = setTimeout(() => {
        if (settled) return;
        settled = true;
        ws.close();
        reject(new Error(`nkbridge: cannot connect to ${this.url} (timeout)`));
      }, timeoutMs);
      ws.onopen = () => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        resolve(this);
      };
      ws.onerror = () => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        reject(new Error(`nkbridge: cannot connect to ${this.url}`));
      };
      ws.onclose = (e) => this._closed(e.code, e.reason);
      ws.onmessage = (e) => this._message(e.data);
    });
  }

  /** close closes the connection; everything it owns on the server stops. */
  close() {
    if (this.ws) this.ws.close(1000);
  }

  _closed(code, reason) {
    const err = new ApiError(1012, `Connection closed (${code}${reason ? " " + reason : ""})`);
    for (const p of this._pending.values()) {
      clearTimeout(p.timer);
      p.reject(err);
    }
    this._pending.clear();
    for (const inv of this._invites.values()) inv._ended({ code: 1012, reason: "Connection closed" });
    this._invites.clear();
    this.dispatchEvent(new CustomEvent("close", { detail: { code, reason } }));
  }

  _send(obj) {
    if (!this.connected) throw new ApiError(1012, "Not connected");
    this.ws.send(JSON.stringify(obj));
  }

  /**
   * request sends {class, subclass, cmd, data} and resolves with the reply's data, or rejects
   * with an ApiError. An ack from the server extends the wait to ackTimeout.
   */
  request(cls, subclass, cmd, data, { timeout } = {}) {
    const tid = ++this._tid;
    const msg = { class: cls, cmd, tid };
    if (subclass) msg.subclass = subclass;
    if (data !== undefined) msg.data = data;
    return new Promise((resolve, reject) => {
      const fail = (ms) => () => {
        this._pending.delete(tid);
        reject(new ApiError(1005, `Timeout: no reply to ${cls}/${subclass || "core"}/${cmd} in ${ms} ms`));
      };
      const ms = timeout ?? this.requestTimeout;
      const p = { resolve, reject, timer: setTimeout(fail(ms), ms) };
      p.extend = () => {
        clearTimeout(p.timer);
        p.timer = setTimeout(fail(this.ackTimeout), this.ackTimeout);
      };
      this._pending.set(tid, p);
      try {
        this._send(msg);
      } catch (e) {
        clearTimeout(p.timer);
        this._pending.delete(tid);
        reject(e);
      }
    });
  }

  _message(text) {
    let msg;
    try {
      msg = JSON.parse(text);
    } catch {
      return; // the server sends only JSON; ignore anything else
    }
    if (msg.cmd !== undefined && msg.class !== undefined) {
      this._serverRequest(msg);
      return;
    }
    if (msg.ack !== undefined && msg.result === undefined) {
      this.counters.acks++;
      const p = this._pending.get(msg.ack);
      if (p) p.extend();
      return;
    }
    const p = this._pending.get(msg.tid);
    if (!p) return;
    this._pending.delete(msg.tid);
    clearTimeout(p.timer);
    if (msg.result === "ok") p.resolve(msg.data === undefined ? {} : msg.data);
    else {
      const d = msg.data || {};
      p.reject(new ApiError(d.code, d.error || d.reason || "error", d));
    }
  }

  _reply(tid, result = "ok", data) {
    const m = { result, tid };
    if (data !== undefined) m.data = data;
    try {
      this._send(m);
    } catch {
      /* closed meanwhile */
    }
  }

  async _serverRequest(msg) {
    const key = `${msg.class}/${msg.subclass || "core"}/${msg.cmd}`;
    const data = msg.data || {};
    if (key === "core/core/ping") {
      this.counters.pings++;
      this._reply(msg.tid);
      return;
    }
    if (key === "core/core/event") {
      this.counters.events++;
      this._reply(msg.tid);
      if (data.class === "media" && data.subclass === "call" && data.type === "hangup") {
        const inv = this._invites.get(data.obj_id);
        if (inv) {
          this._invites.delete(data.obj_id);
          inv._ended(data.body);
        }
        this._calls.delete(data.obj_id);
      }
      this.dispatchEvent(new CustomEvent("event", { detail: data }));
      return;
    }
    if (key === "media/call/invite") {
      this.counters.invites++;
      this._reply(msg.tid);
      const inv = new Invite(this, data);
      this._invites.set(inv.callId, inv);
      this.dispatchEvent(new CustomEvent("invite", { detail: inv }));
      return;
    }
    this.dispatchEvent(new CustomEvent("request", { detail: msg }));
    if (!this.onRequest) {
      this._reply(msg.tid);
      return;
    }
    try {
      let r = this.onRequest(msg);
      if (r && typeof r.then === "function") {
        this._send({ ack: msg.tid });
        r = await r;
      }
      this._reply(msg.tid, (r && r.result) || "ok", r && r.data);
    } catch (e) {
      this._reply(msg.tid, "error", { code: e.code || 9999, error: String(e.message || e) });
    }
  }

  /** on calls fn(event) for every delivered event matching sel ({class, subclass, type, obj_id};
   *  missing or "*" fields match anything). Returns a function that removes the listener. */
  on(sel, fn) {
    const h = (e) => {
      if (matches(sel, e.detail)) fn(e.detail);
    };
    this.addEventListener("event", h);
    return () => this.removeEventListener("event", h);
  }

  /** waitEvent resolves with the next delivered event matching sel (see on). */
  waitEvent(sel, timeoutMs = 10000) {
    return new Promise((resolve, reject) => {
      const off = this.on(sel, (ev) => {
        clearTimeout(t);
        off();
        resolve(ev);
      });
      const t = setTimeout(() => {
        off();
        reject(new ApiError(1005, `Timeout waiting for event ${JSON.stringify(sel)}`));
      }, timeoutMs);
    });
  }

  // ---- core

  /** login authenticates; resolves with {session_id}. Nothing else works before it. */
  async login(user, password, extra = {}) {
    const r = await this.request("core", "user", "login", { user, password, ...extra });
    this.user = user;
    this.loginSessionId = r.session_id;
    return r;
  }

  /** subscribe to events: {class, subclass?, type?, obj_id?, body?} ("*" = any). */
  subscribe(sel) {
    return this.request("core", "event", "subscribe", sel);
  }
  unsubscribe(sel) {
    return this.request("core", "event", "unsubscribe", sel);
  }
  getSubscriptions() {
    return this.request("core", "event", "get_subscriptions", {});
  }
  /** sendEvent publishes an event of a class of your own to its subscribers. */
  sendEvent(ev) {
    return this.request("core", "event", "send", ev);
  }
  listUsers() {
    return this.request("core", "user", "list", {});
  }

  // ---- sessions

  /** startSession starts a session of a type (p2p, echo, proxy, park, mcu, ...) with data such
   *  as {offer: {sdp}}; resolves with {session_id, answer?, offer?, room_id?}. */
  startSession(type, data = {}) {
    const d = { ...data, type };
    if (d.offer) d.offer = descriptor(d.offer);
    if (d.answer) d.answer = descriptor(d.answer);
    return this.request("media", "session", "start", d);
  }
  stopSession(sessionId, { code, reason } = {}) {
    const d = { session_id: sessionId };
    if (code) d.code = code;
    if (reason) d.reason = reason;
    return this.request("media", "session", "stop", d);
  }
  setAnswer(sessionId, answer) {
    return this.request("media", "session", "set_answer", { session_id: sessionId, answer: descriptor(answer) });
  }
  /** updateSession applies an update of a kind (media, session_type, listen_switch, mcu_layout). */
  updateSession(sessionId, updateType, opts = {}) {
    return this.request("media", "session", "update", { ...opts, session_id: sessionId, update_type: updateType });
  }
  /** startStream streams the session's audio to a WebSocket application (docs/API.md "Audio
   *  streams"): `stream` is `{url, mix?, sample_rate?, bidirectional?, metadata?, framing?,
   *  reconnect?, hangup_on_close?}`; resolves to `{stream_id}`. */
  startStream(sessionId, stream) {
    return this.request("media", "session", "update", { session_id: sessionId, update_type: "media", stream });
  }
  /** stopStream ends the session's streams. */
  stopStream(sessionId) {
    return this.request("media", "session", "update", { session_id: sessionId, update_type: "media", stream: false });
  }
  sessionInfo(sessionId) {
    return this.request("media", "session", "info", { session_id: sessionId });
  }
  listSessions() {
    return this.request("media", "session", "list", {});
  }
  /** setCandidate trickles one local ICE candidate (RTCIceCandidate or its init). */
  setCandidate(sessionId, cand) {
    const c = typeof cand.toJSON === "function" ? cand.toJSON() : cand;
    return this.request("media", "session", "set_candidate", {
      session_id: sessionId, candidate: c.candidate, sdpMid: c.sdpMid, sdpMLineIndex: c.sdpMLineIndex ?? 0,
    });
  }
  setCandidateEnd(sessionId) {
    return this.request("media", "session", "set_candidate_end", { session_id: sessionId });
  }

  /** trickle sends pc's candidates for a session as they are found, and adds the candidates the
   *  server delivers for it (media/session/candidate events). Returns a function to stop. */
  trickle(pc, sessionId) {
    const onIce = (e) => {
      const p = e.candidate && e.candidate.candidate
        ? this.setCandidate(sessionId, e.candidate)
        : this.setCandidateEnd(sessionId);
      p.catch(() => {});
    };
    pc.addEventListener("icecandidate", onIce);
    const off = this.on({ class: "media", subclass: "session", type: "candidate", obj_id: sessionId }, (ev) => {
      const b = ev.body || {};
      if (b.candidate_end) pc.addIceCandidate(null).catch(() => {});
      else if (b.candidate) pc.addIceCandidate(b.candidate).catch(() => {});
    });
    return () => {
      pc.removeEventListener("icecandidate", onIce);
      off();
    };
  }

  // ---- calls

  /** startCall calls a destination: {type: "user"|"session"|"sip"|"verto"|"", callee,
   *  session_id?, offer?, caller_name?, caller_id?, ring_time?}; resolves with {call_id}. */
  async startCall(data) {
    const d = { ...data };
    if (d.offer) d.offer = descriptor(d.offer);
    const r = await this.request("media", "call", "start", d);
    if (r.call_id) this._calls.add(r.call_id);
    return r;
  }
  /** hangup ends a call (ours, or one we were invited to). */
  hangup(callId, { code, reason } = {}) {
    const d = { call_id: callId };
    if (code) d.code = code;
    if (reason) d.reason = reason;
    this._calls.delete(callId);
    return this.request("media", "call", "hangup", d);
  }
  /**
   * transferCall connects the other party of an answered call (ours, or one we accepted) to
   * target instead of us: a user name, "sip:…" URL or "verto:login" (opts.type forces user,
   * sip or verto). Resolves with {call_id} of the new call once it is answered (the old call
   * then ends with 1013 "Transferred"); rejects with the new call's error (1030 a target we may
   * not call, 2022 no destination, 2021 rejected, 2023 no answer), the old call going on.
   */
  async transferCall(callId, target, { type } = {}) {
    const d = { call_id: callId, target };
    if (type) d.type = type;
    const r = await this.request("media", "call", "transfer", d);
    this._calls.delete(callId);
    return r;
  }
  callInfo(callId) {
    return this.request("media", "call", "info", { call_id: callId });
  }
  listCalls() {
    return this.request("media", "call", "list", {});
  }
}

/** matches reports whether an event matches a selector (missing or "*" fields match all). */
export function matches(sel, ev) {
  for (const k of ["class", "subclass", "type", "obj_id"]) {
    const want = sel[k];
    if (want !== undefined && want !== "*" && want !== ev[k]) return false;
  }
  return true;
}

/** gatheredDescription waits (up to ms) for pc to finish gathering ICE candidates and returns
 *  its local description ({type, sdp}) for full-SDP (non-trickle) signalling. */
export function gatheredDescription(pc, ms = 5000) {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(t);
      pc.removeEventListener("icegatheringstatechange", check);
      const d = pc.localDescription;
      resolve({ type: d.type, sdp: d.sdp });
    };
    const check = () => {
      if (pc.iceGatheringState === "complete") done();
    };
    const t = setTimeout(done, ms);
    pc.addEventListener("icegatheringstatechange", check);
    check();
  });
}
