// The conference room page: join a room by name; your audio goes into an mcu room (nkbridge
// mixes it, you hear everyone but yourself), your camera into an sfu room (<name>-video) from
// which you receive every other participant's camera. Live participant list with talking
// indicators (media/room/talking), mute (media/session/update media use_audio). Built only on
// nkbridge.js; plain ES module, no build step.
import { ApiError } from "./nkbridge.js";
import { $, log, describe, showError, audioSource, meter, newPC, setupLogin, gatheredDescription } from "./pages.js";

// window.room exposes the page's state (for the console and for tests).
const room = (window.room = {
  client: null,
  name: "", // the mcu room id; the sfu room is name + "-video"
  video: "",
  mcu: null, // {pc, sid, stream, remote, stopMeter}
  pub: null, // {pc, sid, stream}
  tiles: new Map(), // publisher session id -> {sid, pc, el, user}
  members: new Map(), // mcu session id -> {user, talking}
  muted: false,
  level: 0,
  off: [],
});

const login = setupLogin({
  onLogin: (c) => {
    room.client = c;
    update();
  },
  onClose: () => {
    cleanup("connection closed");
  },
});

function inRoom() {
  return !!room.mcu;
}

function update() {
  const c = room.client;
  const logged = !!(c && c.user && c.connected);
  $("join").disabled = !logged || inRoom() || room.joining;
  $("leave").disabled = !inRoom();
  $("mute").disabled = !inRoom();
  $("mute").textContent = room.muted ? "Unmute" : "Mute";
  $("mute").setAttribute("aria-pressed", String(room.muted));
  $("room-name").disabled = inRoom();
  $("video-room").textContent = ($("room-name").value || "lobby") + "-video";
}

// ---- participants (the mcu room's publishers)

function renderMembers() {
  const ul = $("members");
  ul.textContent = "";
  const entries = [...room.members.entries()].sort((a, b) => (a[1].user || "").localeCompare(b[1].user || ""));
  for (const [sid, m] of entries) {
    const li = document.createElement("li");
    li.dataset.session = sid;
    li.dataset.user = m.user || "";
    const me = room.mcu && sid === room.mcu.sid;
    li.className = (m.talking ? "talking" : "") + (me ? " me" : "");
    const dot = document.createElement("span");
    dot.className = "dot";
    dot.title = m.talking ? "talking" : "silent";
    li.append(dot, document.createTextNode(` ${m.user || sid.slice(0, 8)}${me ? " (you)" : ""}${me && room.muted ? " — muted" : ""}`));
    ul.appendChild(li);
  }
  $("member-count").textContent = String(room.members.size);
}

async function refreshMembers() {
  if (!room.name) return;
  try {
    const info = await room.client.request("media", "room", "info", { room_id: room.name });
    const pubs = info.publishers || {};
    const next = new Map();
    for (const [sid, p] of Object.entries(pubs)) {
      const old = room.members.get(sid);
      next.set(sid, { user: p.user || (old && old.user) || "", talking: old ? old.talking : !!p.talking });
    }
    room.members = next;
    renderMembers();
  } catch (e) {
    log("err", `room info: ${describe(e)}`);
  }
}

// ---- video tiles (listeners of the sfu room's other publishers)

async function listenTo(pid, user) {
  if (room.tiles.has(pid) || (room.pub && pid === room.pub.sid)) return;
  const tile = { pid, user: user || "", pc: null, sid: null, el: null };
  room.tiles.set(pid, tile);
  const fig = document.createElement("figure");
  fig.className = "tile";
  fig.dataset.publisher = pid;
  const video = document.createElement("video");
  video.autoplay = true;
  video.muted = true;
  video.playsInline = true;
  const cap = document.createElement("figcaption");
  cap.textContent = user || pid.slice(0, 8);
  fig.append(video, cap);
  $("grid").appendChild(fig);
  tile.el = fig;
  try {
    tile.pc = newPC();
    tile.pc.addEventListener("track", (e) => {
      video.srcObject = e.streams[0] || new MediaStream([e.track]);
      video.play().catch(() => {});
    });
    const r = await room.client.startSession("listen", { publisher_id: pid });
    tile.sid = r.session_id;
    if (!room.tiles.has(pid)) throw new Error("left meanwhile");
    room.off.push(room.client.on({ class: "media", subclass: "session", type: "stop", obj_id: r.session_id }, () => dropTile(pid)));
    await tile.pc.setRemoteDescription({ type: "offer", sdp: r.offer.sdp });
    await tile.pc.setLocalDescription(await tile.pc.createAnswer());
    const ans = await gatheredDescription(tile.pc);
    await room.client.setAnswer(r.session_id, { sdp: ans.sdp });
    log("in", `watching ${cap.textContent}`, { session_id: r.session_id });
  } catch (e) {
    if (room.tiles.has(pid)) log("err", `watch ${pid}: ${describe(e)}`);
    dropTile(pid);
  }
}

function dropTile(pid) {
  const t = room.tiles.get(pid);
  if (!t) return;
  room.tiles.delete(pid);
  if (t.pc) t.pc.close();
  if (t.el) t.el.remove();
  if (t.sid && room.client && room.client.connected) room.client.stopSession(t.sid).catch(() => {});
}

async function refreshTiles() {
  try {
    const info = await room.client.request("media", "room", "info", { room_id: room.video });
    for (const [pid, p] of Object.entries(info.publishers || {})) listenTo(pid, p.user);
  } catch (e) {
    log("err", `video room info: ${describe(e)}`);
  }
}

// ---- joining and leaving

// ensureRoom creates a room of a class, or finds it already there (2031).
async function ensureRoom(id, cls) {
  try {
    await room.client.request("media", "room", "create", { class: cls, room_id: id });
    log("out", `created ${cls} room ${id}`);
  } catch (e) {
    if (!(e instanceof ApiError && e.code === 2031)) throw e;
  }
}

function roomEvents() {
  const c = room.client;
  room.off.push(c.on({ class: "media", subclass: "room", obj_id: room.name }, (ev) => {
    const b = ev.body || {};
    switch (ev.type) {
      case "started_publisher":
        refreshMembers();
        break;
      case "stopped_publisher":
        room.members.delete(b.session_id);
        renderMembers();
        break;
      case "talking": {
        const m = room.members.get(b.session_id);
        if (m) m.talking = !!b.talking;
        else refreshMembers();
        renderMembers();
        break;
      }
      case "destroyed":
        leave("the room was destroyed");
        break;
    }
  }));
  room.off.push(c.on({ class: "media", subclass: "room", obj_id: room.video }, (ev) => {
    const b = ev.body || {};
    if (ev.type === "started_publisher" && b.session_id) refreshTiles();
    if (ev.type === "stopped_publisher") dropTile(b.session_id);
  }));
}

async function join(ev) {
  ev.preventDefault();
  showError("room-error", "");
  const c = room.client;
  room.name = $("room-name").value.trim();
  room.video = room.name + "-video";
  room.joining = true;
  update();
  $("room-status").textContent = "joining…";
  try {
    for (const id of [room.name, room.video]) {
      await c.subscribe({ class: "media", subclass: "room", obj_id: id });
    }
    roomEvents();
    await ensureRoom(room.name, "mcu");
    // Audio: the mcu mix.
    const m = { pc: newPC() };
    room.mcu = m;
    m.stream = await audioSource();
    m.pc.addEventListener("track", (e) => {
      m.remote = e.streams[0] || new MediaStream([e.track]);
      const el = $("room-audio");
      el.srcObject = m.remote;
      el.play().catch(() => {});
      m.stopMeter = meter(m.remote, (v) => {
        room.level = v;
        $("room-level").value = v;
      });
    });
    for (const t of m.stream.getAudioTracks()) m.pc.addTrack(t, m.stream);
    await m.pc.setLocalDescription(await m.pc.createOffer());
    const offer = await gatheredDescription(m.pc);
    const r = await c.startSession("mcu", { offer: { sdp: offer.sdp }, room_id: room.name });
    m.sid = r.session_id;
    room.off.push(c.on({ class: "media", subclass: "session", type: "stop", obj_id: m.sid }, (e) => {
      const b = e.body || {};
      leave(`left: ${b.code} ${b.reason || ""}`);
    }));
    await m.pc.setRemoteDescription({ type: "answer", sdp: r.answer.sdp });
    room.members.set(m.sid, { user: c.user, talking: false });
    renderMembers();
    refreshMembers();

    // Video: publish the camera into the sfu room, watch the others.
    await ensureRoom(room.video, "sfu");
    if ($("camera").checked) {
      const p = { pc: newPC() };
      room.pub = p;
      p.stream = await navigator.mediaDevices.getUserMedia({ video: { width: 320, height: 240, frameRate: 15 }, audio: false });
      $("self-video").srcObject = p.stream;
      $("self-tile").hidden = false;
      for (const t of p.stream.getVideoTracks()) p.pc.addTrack(t, p.stream);
      // A publisher carries audio too (the sfu wants it); the tiles play only its video.
      for (const t of m.stream.getAudioTracks()) p.pc.addTrack(t, p.stream);
      await p.pc.setLocalDescription(await p.pc.createOffer());
      const po = await gatheredDescription(p.pc);
      const pr = await c.startSession("publish", { offer: { sdp: po.sdp }, room_id: room.video });
      p.sid = pr.session_id;
      await p.pc.setRemoteDescription({ type: "answer", sdp: pr.answer.sdp });
    }
    await refreshTiles();
    $("room-status").textContent = `in room ${room.name}`;
    log("in", `joined ${room.name}`, { session_id: m.sid });
  } catch (e) {
    showError("room-error", `Join failed: ${describe(e)}`);
    await leave("join failed");
  }
  room.joining = false;
  update();
}

async function leave(why) {
  if (!room.name) return;
  const c = room.client;
  const stops = [];
  for (const s of [room.mcu, room.pub]) {
    if (s && s.sid && c && c.connected) stops.push(c.stopSession(s.sid).catch(() => {}));
  }
  for (const pid of [...room.tiles.keys()]) dropTile(pid);
  if (c && c.connected) {
    for (const id of [room.name, room.video]) stops.push(c.unsubscribe({ class: "media", subclass: "room", obj_id: id }).catch(() => {}));
  }
  cleanup(typeof why === "string" ? why : "left the room");
  await Promise.all(stops);
}

function cleanup(why) {
  for (const f of room.off) f();
  room.off = [];
  for (const s of [room.mcu, room.pub]) {
    if (!s) continue;
    if (s.stopMeter) s.stopMeter();
    if (s.stream) for (const t of s.stream.getTracks()) t.stop();
    if (s.pc) s.pc.close();
  }
  for (const pid of [...room.tiles.keys()]) dropTile(pid);
  room.mcu = room.pub = null;
  room.members.clear();
  room.muted = false;
  room.name = room.video = "";
  $("room-audio").srcObject = null;
  $("self-video").srcObject = null;
  $("self-tile").hidden = true;
  renderMembers();
  $("room-status").textContent = why;
  update();
}

async function toggleMute() {
  if (!room.mcu) return;
  const want = !room.muted;
  try {
    await room.client.updateSession(room.mcu.sid, "media", { use_audio: !want });
    room.muted = want;
    log("out", want ? "muted" : "unmuted");
  } catch (e) {
    showError("room-error", `Mute failed: ${describe(e)}`);
  }
  renderMembers();
  update();
}

// stats reports, for tests and the curious, what each tile decoded and who is listed.
room.stats = async () => {
  const tiles = [];
  for (const t of room.tiles.values()) {
    let frames = 0;
    if (t.pc) (await t.pc.getStats()).forEach((s) => { if (s.type === "inbound-rtp" && s.kind === "video") frames += s.framesDecoded || 0; });
    tiles.push({ user: t.user, publisher: t.pid, framesDecoded: frames, shown: !!(t.el && t.el.isConnected) });
  }
  const members = [...document.querySelectorAll("#members li")].map((li) => ({
    user: li.dataset.user, talking: li.classList.contains("talking"),
  }));
  return { tiles, members };
};

$("join-form").addEventListener("submit", join);
$("leave").addEventListener("click", () => leave("left the room"));
$("mute").addEventListener("click", toggleMute);
$("room-name").addEventListener("input", update);
$("log-clear").addEventListener("click", () => ($("log").textContent = ""));
void login;
update();
log("in", "page ready");
