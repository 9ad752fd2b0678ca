// The operator view: every session, call, room and SIP registration of the server, read from
// the API (lists and infos) and kept live by events: core/monitor (what starts, registration
// changes; admins only) and media/session, media/call, media/room subscriptions. For a user
// with admin: true; others get the server's refusal, shown as it is. Built only on
// nkbridge.js; plain ES module, no build step.
import { ApiError } from "./nkbridge.js";
import { $, log, describe, showError, setupLogin } from "./pages.js";

// window.op exposes the page's state (for the console and for tests).
const op = (window.op = {
  client: null,
  sessions: new Map(), // id -> info
  calls: new Map(), // id -> info
  rooms: new Map(), // id -> info
  registrations: new Map(), // aor + " " + contact -> binding
  gone: new Set(), // ids of sessions, calls and rooms that ended (late infos are dropped)
  refused: "", // the server's refusal of the admin view
  ready: false,
  events: 0,
});

setupLogin({
  onLogin: start,
  onClose: () => {
    op.ready = false;
    $("live").textContent = "";
  },
});

const short = (id) => (id && id.length > 13 ? id.slice(0, 8) + "…" : id || "");

function cell(tr, text, cls) {
  const td = document.createElement("td");
  td.textContent = text == null ? "" : String(text);
  if (cls) td.className = cls;
  tr.appendChild(td);
}

function render() {
  const rows = (id, map, fill) => {
    const tb = $(id);
    tb.textContent = "";
    for (const [key, v] of [...map.entries()].sort((a, b) => String(a[0]).localeCompare(String(b[0])))) {
      const tr = document.createElement("tr");
      tr.dataset.id = key;
      fill(tr, key, v);
      tb.appendChild(tr);
    }
    $(id + "-count").textContent = String(map.size);
  };
  rows("sessions", op.sessions, (tr, id, s) => {
    tr.title = id;
    cell(tr, short(id), "mono");
    cell(tr, s.type);
    cell(tr, s.user);
    cell(tr, s.state);
    cell(tr, s.backend);
    cell(tr, s.call_id ? "call " + short(s.call_id) : s.room_id ? "room " + s.room_id : "", "mono");
  });
  rows("calls", op.calls, (tr, id, c) => {
    tr.title = id;
    cell(tr, short(id), "mono");
    cell(tr, c.type);
    cell(tr, c.user);
    cell(tr, c.callee);
    cell(tr, c.state);
  });
  rows("rooms", op.rooms, (tr, id, r) => {
    cell(tr, id, "mono");
    cell(tr, r.class);
    cell(tr, Object.values(r.publishers || {}).map((p) => p.user || "?").join(", ") || "0");
    cell(tr, String(Object.keys(r.listeners || {}).length));
  });
  rows("registrations", op.registrations, (tr, key, b) => {
    cell(tr, b.aor);
    cell(tr, b.contact, "mono");
    cell(tr, b.transport);
    cell(tr, b.source, "mono");
    cell(tr, b.expires ? new Date(b.expires).toLocaleTimeString() : "");
    cell(tr, b.user_agent);
  });
}

// ---- fetching

async function fetchSession(id) {
  try {
    const info = await op.client.sessionInfo(id);
    if (!op.gone.has(id)) op.sessions.set(id, { ...op.sessions.get(id), ...info });
  } catch (e) {
    if (e instanceof ApiError && e.code === 1062) op.sessions.delete(id);
    else log("err", `session ${id}: ${describe(e)}`);
  }
  render();
}

async function fetchCall(id) {
  try {
    const info = await op.client.callInfo(id);
    if (!op.gone.has(id)) op.calls.set(id, { ...op.calls.get(id), ...info });
  } catch (e) {
    if (e instanceof ApiError && e.code === 2020) op.calls.delete(id);
    else log("err", `call ${id}: ${describe(e)}`);
  }
  render();
}

async function fetchRoom(id, cls) {
  try {
    const info = await op.client.request("media", "room", "info", { room_id: id });
    if (!op.gone.has(id)) op.rooms.set(id, { class: cls, ...op.rooms.get(id), ...info });
  } catch (e) {
    if (e instanceof ApiError && e.code === 2030) op.rooms.delete(id);
    else log("err", `room ${id}: ${describe(e)}`);
  }
  render();
}

const regKey = (b) => `${b.aor} ${b.contact}`;

async function start(c) {
  op.client = c;
  showError("op-error", "");
  // The admin check first: the server says what is missing when this user is not an admin.
  try {
    const regs = await c.request("core", "monitor", "list", { what: "registrations" });
    for (const b of regs) op.registrations.set(regKey(b), b);
  } catch (e) {
    if (e instanceof ApiError && e.code === 1048) {
      $("registrations-note").textContent = `No SIP registrations to show: ${e.text}`;
      $("registrations-note").hidden = false;
    } else {
      op.refused = describe(e);
      showError("op-error", `This view is for admins. The server says: ${op.refused}`);
      return;
    }
  }
  c.addEventListener("event", (e) => onEvent(e.detail));
  for (const sel of [
    { class: "core", subclass: "monitor" },
    { class: "media", subclass: "session" },
    { class: "media", subclass: "call" },
    { class: "media", subclass: "room" },
  ]) {
    await c.subscribe(sel);
  }
  const [sessions, calls, rooms] = await Promise.all([c.listSessions(), c.listCalls(), c.request("media", "room", "list", {})]);
  await Promise.all([
    ...sessions.map(fetchSession),
    ...calls.map(fetchCall),
    ...rooms.map((r) => fetchRoom(r.room_id, r.class)),
  ]);
  op.ready = true;
  $("live").textContent = "live";
  render();
}

function onEvent(ev) {
  op.events++;
  const b = ev.body || {};
  const id = ev.obj_id;
  if (ev.class === "core" && ev.subclass === "monitor") {
    log("in", `${ev.type} ${id}`);
    if (ev.type === "session_started") {
      op.sessions.set(id, { ...b, state: "starting" });
      fetchSession(id);
    } else if (ev.type === "call_started") {
      op.calls.set(id, { ...b, state: "new" });
      fetchCall(id);
    } else if (ev.type === "registration") {
      if (b.change === "removed" || b.change === "expired") op.registrations.delete(regKey(b));
      else op.registrations.set(regKey(b), b);
      render();
    }
    return;
  }
  if (ev.class !== "media") return;
  switch (ev.subclass) {
    case "session":
      if (ev.type === "stop") {
        op.sessions.delete(id);
        op.gone.add(id);
        render();
      } else if (ev.type !== "candidate" && ev.type !== "info") fetchSession(id);
      break;
    case "call":
      if (ev.type === "hangup") {
        op.calls.delete(id);
        op.gone.add(id);
        render();
      } else fetchCall(id);
      break;
    case "room":
      if (ev.type === "started") op.gone.delete(id); // a room id may come back
      if (ev.type === "destroyed") {
        op.rooms.delete(id);
        op.gone.add(id);
        render();
      } else if (ev.type !== "talking") fetchRoom(id, b.class);
      break;
  }
}

$("log-clear").addEventListener("click", () => ($("log").textContent = ""));
render();
log("in", "page ready");
