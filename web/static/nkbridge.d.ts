// Type declarations for nkbridge.js, the ES-module client of the nkbridge control API (the
// NkMEDIA External Interface over WebSocket). Every export of nkbridge.js is declared here and
// nothing else (a test imports the module and compares).

/** A session description as the API carries it: `{sdp, sdp_type?}` plus caller fields. */
export interface SessionDescription {
  sdp: string;
  /** "webrtc" (default) or "rtp" for plain RTP far sides. */
  sdp_type?: "webrtc" | "rtp" | string;
  caller_name?: string;
  caller_id?: string;
  callee_name?: string;
  callee_id?: string;
  trickle_ice?: boolean;
  [field: string]: unknown;
}

/** What the helpers accept as an offer or answer: the API form, an RTCSessionDescription(Init)
 *  (its `type` is dropped), or a bare SDP string. */
export type DescriptionLike = SessionDescription | RTCSessionDescriptionInit | RTCSessionDescription | string;

/** A delivered event (core/event). */
export interface NkbEvent {
  class: string;
  subclass?: string;
  type?: string;
  obj_id?: string;
  body?: Record<string, any>;
}

/** Selects events: missing or "*" fields match anything. */
export interface EventSelector {
  class?: string;
  subclass?: string;
  type?: string;
  obj_id?: string;
}

/** A subscription request (core/event/subscribe): `body` is merged under delivered bodies. */
export interface Subscription extends EventSelector {
  class: string;
  body?: Record<string, any>;
}

/** A request of the server that the client does not handle itself. */
export interface ServerRequest {
  class: string;
  subclass?: string;
  cmd: string;
  data?: any;
  tid: number | string;
}

/** The answer an `onRequest` handler gives. */
export interface ServerReply {
  result?: "ok" | "error";
  data?: any;
}

/** How an Invite reports progress: media/call commands ("command", the later release) or
 *  core/event events ("event", the seed's style). */
export type InviteStyle = "command" | "event";

export interface NkbClientOptions {
  /** ms to wait for a reply (an ack extends it); default 10000. */
  requestTimeout?: number;
  /** ms to wait after the server's ack; default 180000. */
  ackTimeout?: number;
  /** default "command". */
  inviteStyle?: InviteStyle;
  /** Answers other server requests; a Promise makes the client ack first. */
  onRequest?: ((msg: ServerRequest) => ServerReply | void | Promise<ServerReply | void>) | null;
}

/** What the server sent so far. */
export interface Counters {
  pings: number;
  acks: number;
  events: number;
  invites: number;
}

export interface LoginReply {
  session_id: string;
  [field: string]: unknown;
}

/** media/session/start options besides the type. */
export interface StartSessionData {
  offer?: DescriptionLike;
  answer?: DescriptionLike;
  session_id?: string;
  wait_timeout?: number;
  ready_timeout?: number;
  subscribe?: boolean;
  events_body?: Record<string, any>;
  backend?: string;
  peer?: string;
  room_id?: string;
  publisher_id?: string;
  [field: string]: unknown;
}

export interface StartSessionReply {
  session_id: string;
  answer?: SessionDescription;
  offer?: SessionDescription;
  room_id?: string;
  [field: string]: unknown;
}

export type CallType = "user" | "session" | "sip" | "verto" | "bot" | "";

export interface StartCallData {
  type?: CallType | string;
  callee?: string;
  session_id?: string;
  offer?: DescriptionLike;
  caller_name?: string;
  caller_id?: string;
  /** Seconds. */
  ring_time?: number;
  /** Stream the call's audio (needs session_id); it connects before the call rings. */
  stream?: StreamOptions;
  [field: string]: unknown;
}

/** A live audio stream to a WebSocket application (docs/API.md "Audio streams"). */
export interface StreamOptions {
  /** ws:// (loopback only) or wss:// URL; its host must be in streams.allowed_hosts. */
  url: string;
  /** "mono" (default: the caller), "stereo" (left the caller, right the far side) or "mixed". */
  mix?: "mono" | "stereo" | "mixed";
  /** 8000 (default) or 16000 Hz, 16-bit little-endian PCM in 20 ms binary frames. */
  sample_rate?: 8000 | 16000;
  /** The application's audio is played to the caller (bot sessions). */
  bidirectional?: boolean;
  /** Passed in the start message (Twilio framing: customParameters). */
  metadata?: Record<string, any>;
  /** "nkbridge" (default) or "twilio" (Twilio Media Streams events, µ-law 8 kHz). */
  framing?: "nkbridge" | "twilio";
  /** Connect again (streams.reconnect_attempts) after losing the application. */
  reconnect?: boolean;
  /** The application leaving ends the session (and its call). */
  hangup_on_close?: boolean;
}

export interface StartCallReply {
  call_id: string;
  [field: string]: unknown;
}

export interface HangupOptions {
  code?: number;
  reason?: string;
}

/** media/call/transfer options. */
export interface TransferOptions {
  /** Forces the target's type (default: "sip:…" URLs are sip, "verto:x" verto, else any). */
  type?: "user" | "sip" | "verto";
}

/** The reply to media/call/transfer. */
export interface TransferReply {
  /** The new call (the transferee with the target). */
  call_id: string;
}

/** The body of a call's hangup (or the client's own "Connection closed"). */
export interface HangupBody {
  code?: number;
  reason?: string;
  [field: string]: unknown;
}

export type UpdateType = "media" | "session_type" | "listen_switch" | "mcu_layout";

/** The events NkbClient dispatches; the payload is in `event.detail`. */
export interface NkbClientEventMap {
  event: CustomEvent<NkbEvent>;
  invite: CustomEvent<Invite>;
  request: CustomEvent<ServerRequest>;
  close: CustomEvent<{ code: number; reason: string }>;
}

export interface InviteEventMap {
  hangup: CustomEvent<HangupBody>;
}

/** An error reply of the API: `code` is the numeric API code (1041, 2001, ...). */
export class ApiError extends Error {
  constructor(code: number, text: string, data?: any);
  readonly name: "ApiError" | string;
  code: number;
  text: string;
  data: any;
}

/** The API address of the page's own server: ws(s)://host/api. */
export function defaultURL(loc?: { protocol: string; host: string }): string;

/** Turns an RTCSessionDescription (or {sdp}, or an SDP string) into the API's {sdp, ...} form. */
export function descriptor(d: DescriptionLike): SessionDescription;
export function descriptor<T extends null | undefined>(d: T): T;

/** Whether an event matches a selector (missing or "*" fields match all). */
export function matches(sel: EventSelector, ev: NkbEvent): boolean;

/** Waits (up to ms, default 5000) for pc to finish gathering ICE candidates and returns its
 *  local description for full-SDP (non-trickle) signalling. */
export function gatheredDescription(pc: RTCPeerConnection, ms?: number): Promise<{ type: RTCSdpType; sdp: string }>;

/** An incoming call offered to this connection (media/call/invite). */
export class Invite extends EventTarget {
  constructor(client: NkbClient, data: Record<string, any>);
  client: NkbClient;
  callId: string;
  type: string;
  offer: SessionDescription | null;
  callerName: string;
  callerId: string;
  callerUser: string;
  /** The invite's whole data. */
  data: Record<string, any>;
  state: "ringing" | "accepted" | "rejected" | "ended";
  /** The hangup's body once the call ended. */
  endReason: HangupBody | null;

  /** Tells the caller we are alerting (optionally with an early answer). */
  ringing(answer?: DescriptionLike, opts?: { style?: InviteStyle }): Promise<any>;
  /** Answers the call; the first acceptance wins (a late one rejects with ApiError 2024). */
  accept(answer: DescriptionLike, opts?: { style?: InviteStyle; sessionId?: string }): Promise<void>;
  /** Declines the call (default code 2021 call_rejected). */
  reject(opts?: { code?: number; reason?: string; style?: InviteStyle }): Promise<void>;
  /** Ends the call (accepted) or declines it (still ringing). */
  hangup(opts?: HangupOptions): Promise<any>;
  /** Transfers the caller of this accepted call to target (NkbClient.transferCall). */
  transfer(target: string, opts?: TransferOptions): Promise<TransferReply>;

  addEventListener<K extends keyof InviteEventMap>(
    type: K, listener: (this: Invite, ev: InviteEventMap[K]) => any, options?: boolean | AddEventListenerOptions): void;
  addEventListener(type: string, listener: EventListenerOrEventListenerObject | null, options?: boolean | AddEventListenerOptions): void;
  removeEventListener<K extends keyof InviteEventMap>(
    type: K, listener: (this: Invite, ev: InviteEventMap[K]) => any, options?: boolean | EventListenerOptions): void;
  removeEventListener(type: string, listener: EventListenerOrEventListenerObject | null, options?: boolean | EventListenerOptions): void;
}

/** One control API connection. */
export class NkbClient extends EventTarget {
  /** @param url ws:// or wss:// URL of the API (default: this page's server, /api) */
  constructor(url?: string, opts?: NkbClientOptions);
  url: string;
  requestTimeout: number;
  ackTimeout: number;
  inviteStyle: InviteStyle;
  onRequest: NkbClientOptions["onRequest"];
  ws: WebSocket | null;
  /** The logged-in user, after login. */
  user: string | null;
  loginSessionId: string | null;
  counters: Counters;
  /** True while the WebSocket is open. */
  readonly connected: boolean;

  /** Opens the WebSocket (default timeout 10000 ms). */
  connect(timeoutMs?: number): Promise<this>;
  /** Closes the connection; everything it owns on the server stops. */
  close(): void;
  /** Sends {class, subclass, cmd, data}; resolves with the reply's data or rejects with ApiError. */
  request<T = any>(cls: string, subclass: string | null | undefined, cmd: string, data?: any, opts?: { timeout?: number }): Promise<T>;

  /** Calls fn for every delivered event matching sel; returns a function removing it. */
  on(sel: EventSelector, fn: (ev: NkbEvent) => void): () => void;
  /** Resolves with the next delivered event matching sel (default timeout 10000 ms). */
  waitEvent(sel: EventSelector, timeoutMs?: number): Promise<NkbEvent>;

  /** Authenticates; nothing else works before it. Rejects with ApiError 1030 on a bad password. */
  login(user: string, password: string, extra?: Record<string, any>): Promise<LoginReply>;
  subscribe(sel: Subscription): Promise<any>;
  unsubscribe(sel: Subscription): Promise<any>;
  getSubscriptions(): Promise<any>;
  /** Publishes an event of a class of your own to its subscribers. */
  sendEvent(ev: NkbEvent): Promise<any>;
  listUsers(): Promise<any>;

  /** Starts a session of a type (p2p, echo, proxy, park, mcu, publish, listen, ...). */
  startSession(type: string, data?: StartSessionData): Promise<StartSessionReply>;
  stopSession(sessionId: string, opts?: HangupOptions): Promise<any>;
  setAnswer(sessionId: string, answer: DescriptionLike): Promise<any>;
  /** Applies an update of a kind (media, session_type, listen_switch, mcu_layout). */
  updateSession(sessionId: string, updateType: UpdateType | string, opts?: Record<string, any>): Promise<any>;
  /** Streams the session's audio to a WebSocket application (media/session/update with
   *  `stream`); resolves to `{stream_id}`. The user must be in `streams.allowed_users` and the
   *  URL's host in `streams.allowed_hosts`. */
  startStream(sessionId: string, stream: StreamOptions): Promise<{ stream_id: string }>;
  /** Ends the session's streams (`stream: false`). */
  stopStream(sessionId: string): Promise<any>;
  sessionInfo(sessionId: string): Promise<any>;
  listSessions(): Promise<any>;
  /** Trickles one local ICE candidate. */
  setCandidate(sessionId: string, cand: RTCIceCandidate | RTCIceCandidateInit): Promise<any>;
  setCandidateEnd(sessionId: string): Promise<any>;
  /** Sends pc's candidates for a session as found and adds the ones the server delivers;
   *  returns a function that stops. */
  trickle(pc: RTCPeerConnection, sessionId: string): () => void;

  /** Calls a destination; resolves with {call_id}. */
  startCall(data: StartCallData): Promise<StartCallReply>;
  /** Ends a call (ours, or one we were invited to). */
  hangup(callId: string, opts?: HangupOptions): Promise<any>;
  /** Connects the other party of an answered call (ours, or one we accepted) to target
   *  instead of us; resolves with the new call's id once it is answered (the old call ends
   *  with 1013 "Transferred"), rejects with an ApiError when it fails (the old call goes on). */
  transferCall(callId: string, target: string, opts?: TransferOptions): Promise<TransferReply>;
  callInfo(callId: string): Promise<any>;
  listCalls(): Promise<any>;

  addEventListener<K extends keyof NkbClientEventMap>(
    type: K, listener: (this: NkbClient, ev: NkbClientEventMap[K]) => any, options?: boolean | AddEventListenerOptions): void;
  addEventListener(type: string, listener: EventListenerOrEventListenerObject | null, options?: boolean | AddEventListenerOptions): void;
  removeEventListener<K extends keyof NkbClientEventMap>(
    type: K, listener: (this: NkbClient, ev: NkbClientEventMap[K]) => any, options?: boolean | EventListenerOptions): void;
  removeEventListener(type: string, listener: EventListenerOrEventListenerObject | null, options?: boolean | EventListenerOptions): void;
}
