// A typed example of @nkbridge/client (web/static/nkbridge.js + nkbridge.d.ts), checked with
// `tsc --noEmit -p web/examples` by the test suite: a browser agent that logs in, runs an echo
// test, answers incoming calls with its microphone and calls a SIP URL.
import {
  ApiError,
  NkbClient,
  gatheredDescription,
  matches,
  type Invite,
  type NkbEvent,
  type StartSessionReply,
} from "@nkbridge/client";

export async function agent(user: string, password: string): Promise<NkbClient> {
  const nkb = new NkbClient(undefined, { requestTimeout: 5000, inviteStyle: "command" });
  await nkb.connect();
  try {
    const { session_id } = await nkb.login(user, password);
    console.log(`logged in as ${nkb.user}, login session ${session_id}`);
  } catch (e) {
    if (e instanceof ApiError && e.code === 1030) throw new Error("wrong password");
    throw e;
  }

  // Incoming calls: answered "ok" by the client, then handed over as an Invite.
  nkb.addEventListener("invite", async (e) => {
    const inv: Invite = e.detail;
    console.log(`call ${inv.callId} from ${inv.callerName || inv.callerId}`);
    inv.addEventListener("hangup", (h) => console.log("caller gave up:", h.detail.code, h.detail.reason));
    if (!inv.offer) {
      await inv.reject({ code: 2021, reason: "No offer" });
      return;
    }
    const pc = new RTCPeerConnection();
    await pc.setRemoteDescription({ type: "offer", sdp: inv.offer.sdp });
    const mic = await navigator.mediaDevices.getUserMedia({ audio: true });
    mic.getTracks().forEach((t) => pc.addTrack(t, mic));
    await pc.setLocalDescription(await pc.createAnswer());
    await inv.ringing();
    await inv.accept(await gatheredDescription(pc));
  });

  nkb.on({ class: "media", subclass: "call", type: "hangup" }, (ev: NkbEvent) => {
    console.log("call ended", ev.obj_id, ev.body?.code);
  });
  nkb.addEventListener("close", (e) => console.log("closed", e.detail.code));
  return nkb;
}

/** echoTest sends the microphone to nkbridge's echo session and plays what comes back. */
export async function echoTest(nkb: NkbClient, audio: HTMLAudioElement): Promise<() => Promise<void>> {
  const pc = new RTCPeerConnection();
  const mic = await navigator.mediaDevices.getUserMedia({ audio: true });
  mic.getTracks().forEach((t) => pc.addTrack(t, mic));
  pc.addEventListener("track", (e) => (audio.srcObject = e.streams[0] ?? null));
  await pc.setLocalDescription(await pc.createOffer());
  const reply: StartSessionReply = await nkb.startSession("echo", { offer: await gatheredDescription(pc, 3000) });
  if (!reply.answer) throw new Error("echo answered without SDP");
  await pc.setRemoteDescription({ type: "answer", sdp: reply.answer.sdp });
  return async () => {
    await nkb.stopSession(reply.session_id, { reason: "done" });
    pc.close();
  };
}

/** callSIP calls a SIP URL through a proxy session (WebRTC here, plain RTP there). */
export async function callSIP(nkb: NkbClient, url: string, pc: RTCPeerConnection): Promise<string> {
  await pc.setLocalDescription(await pc.createOffer());
  const { session_id } = await nkb.startSession("p2p", { offer: pc.localDescription! });
  const stopTrickle = nkb.trickle(pc, session_id);
  const answered = nkb.waitEvent({ class: "media", subclass: "session", type: "answer", obj_id: session_id }, 30000);
  const { call_id } = await nkb.startCall({ type: "sip", callee: url, session_id, ring_time: 30 });
  const ev = await answered;
  await pc.setRemoteDescription({ type: "answer", sdp: String(ev.body?.answer?.sdp ?? "") });
  stopTrickle();
  console.log(matches({ class: "media" }, ev), nkb.counters.events);
  return call_id;
}
