// One participant's connection to a Fortrolig node: the signaling WebSocket (docs/protocol.md),
// one RTCPeerConnection, and reconnection with the resume token. No DOM here: the page listens
// to the hooks and drives the controls.
//
// Negotiation follows the protocol: after `joined` the page makes exactly one offer publishing
// its tracks (sendonly), applies the server's answer, and only then answers the server's
// renegotiation offers, one at a time in the order they came. aiortc has no ICE restart, so a
// dropped WebSocket or a failed peer connection means: new WebSocket, `hello` with the newest
// resume token, `join`, a new RTCPeerConnection and a new publish offer.

const PING_EVERY_MS = 10_000; // app-level ping: browsers cannot see WebSocket pings
const SILENCE_LIMIT_MS = 30_000; // no message for this long: the connection is dead
const MEDIA_CONNECT_LIMIT_MS = 20_000; // publish answered but no media connection by then
const DISCONNECTED_GRACE_MS = 4_000; // ICE "disconnected" may recover by itself
const BACKOFF_MS = [250, 1_000, 2_000, 4_000, 8_000, 15_000];

// Close codes after which reconnecting cannot help (docs/protocol.md, "Close codes").
const FINAL_CLOSE = { 4401: "auth", 4403: "forbidden", 4409: "replaced", 1002: "error", 1009: "error" };
const CLOSE_REDIRECT = 4307; // after `redirect`: connect to the node it names
// Not final, reconnect: 1001 (the node is going away), 1013 (try again later: no node of the
// room's regions, or coordination down), 4503 (the node handed the room over).

const SCREEN_SUFFIX = "-screen";

export class Call {
  /**
   * @param {object} opts
   *   wsUrl, joinToken, resumeToken (optional, from an earlier load of this tab), name
   *   e2ee (optional, media-e2ee.js): every sender and receiver is attached to it as it is made
   *   hooks: onState(state, detail), onWelcome(welcome), onRoster(participants),
   *          onParticipantJoined(p), onParticipantLeft(id, reason), onParticipantUpdated(p),
   *          onRemoteTrack(participantId, stream, track), onRemoteScreen(participantId,
   *          stream, track), onScreenShare(allowed, by), onChat(msg), onError(msg),
   *          onResumeToken(token | null), onWaitingClients(clients) (practitioners),
   *          onRecording(msg) (each `recording` message: asking, recording, stopped)
   *   states: idle, connecting, lobby (a client waits to be admitted: the server said
   *   `waiting`), alone (joined, nobody else in the room yet), in_session, reconnecting, ended
   */
  constructor(opts) {
    this.wsUrl = opts.wsUrl;
    this.joinToken = opts.joinToken || null;
    this.resumeToken = opts.resumeToken || null;
    this.name = opts.name || null;
    this.hooks = opts.hooks;
    this.e2ee = opts.e2ee?.supported ? opts.e2ee : null;
    this.state = "idle";
    this.endReason = null;
    this.gen = 0; // bumps on every (re)connection; stale callbacks compare and return
    this.attempt = 0;
    this.ws = null;
    this.pc = null;
    this.selfId = null;
    this.roomId = null;
    this.role = null;
    this.iceServers = [];
    this.iceTransportPolicy = "all";
    this.participants = new Map();
    this.local = { stream: new MediaStream(), audio: null, video: null, hasAudio: false, hasVideo: false, screen: null };
    this.mediaState = { audio: true, video: true };
    // Who may share a screen here ("everyone" | "practitioners", from joined / screen_share).
    this.screenShare = "everyone";
    this.blocked = { audio: false, video: false }; // the browser refused the device
    // This page's connection quality (quality.js grades getStats) and whether it sends no video
    // because its network is too poor for it (the camera stays on: "audio only").
    this.quality = "unknown";
    this.audioOnly = false;
    this.senders = { audio: null, video: null, screen: null };
    this.trackOwners = new Map(); // mid of a receiving m-line -> participant id
    this.screenMids = new Set(); // mids of screens: ours (sending) and the others'(receiving)
    this.joinedOnce = false;
    this.timers = new Set();
  }

  // -- public API ---------------------------------------------------------------------------

  /** Start with the tracks chosen in the preview (either may be null). */
  start({ audio, video, hasAudio, hasVideo }) {
    this.setLocalTracks({ audio, video, hasAudio, hasVideo });
    this.setState("connecting");
    this.connect();
  }

  setLocalTracks({ audio, video, hasAudio, hasVideo }) {
    this.local.audio = audio || null;
    this.local.video = video || null;
    this.local.hasAudio = Boolean(hasAudio || audio);
    this.local.hasVideo = Boolean(hasVideo || video);
    this.mediaState = {
      audio: Boolean(audio && audio.enabled),
      video: Boolean(video && video.readyState === "live"),
    };
  }

  /** Microphone on/off: the track keeps running, muted tracks send silence. */
  setAudioEnabled(on) {
    if (this.local.audio) this.local.audio.enabled = on;
    this.mediaState.audio = Boolean(on && this.local.audio);
    this.sendMediaState();
  }

  /** Swap the outgoing camera track (null = camera off); no renegotiation needed. */
  async replaceVideo(track) {
    this.local.video = track;
    if (track) this.local.hasVideo = true;
    this.mediaState.video = Boolean(track);
    if (this.senders.video) await this.senders.video.replaceTrack(this.audioOnly ? null : track);
    this.sendMediaState();
  }

  async replaceAudio(track) {
    if (track) track.enabled = this.mediaState.audio || !this.local.audio;
    this.local.audio = track;
    if (this.senders.audio) await this.senders.audio.replaceTrack(track);
  }

  /** This browser can share a screen (desktop browsers; phones mostly cannot). */
  get screenCapable() {
    return typeof navigator.mediaDevices?.getDisplayMedia === "function";
  }

  /** May this participant share now (the practitioner may restrict it to practitioners)? */
  get mayShareScreen() {
    return this.screenCapable && (this.screenShare === "everyone" || this.role === "practitioner");
  }

  /**
   * Share a screen track (null stops): it goes on the publish offer's second video m-line,
   * kept from the start for it, so no renegotiation; the others see media_state.screen.
   */
  async shareScreen(track) {
    this.local.screen = track || null;
    if (this.senders.screen) await this.senders.screen.replaceTrack(this.local.screen);
    this.sendMediaState();
  }

  /** Practitioners: who may share a screen in this room ("everyone" | "practitioners"). */
  setScreenShare(allowed) {
    return this.isJoined() && this.send({ type: "set_screen_share", allowed });
  }

  /** Which devices the browser refuses (so the others see "blocked", not just "off"). */
  setBlocked({ audio, video }) {
    this.blocked = { audio: Boolean(audio), video: Boolean(video) };
    this.sendMediaState();
  }

  /** This page's connection quality ("unknown" | "good" | "fair" | "poor"): the others show it. */
  setQuality(level) {
    if (level === this.quality) return;
    this.quality = level;
    this.sendMediaState();
  }

  /**
   * Audio only (true) while the network is too poor for video: the camera sender sends nothing
   * (as with the camera off, no renegotiation) but the camera stays on, to come back by itself.
   */
  async setAudioOnly(on) {
    if (Boolean(on) === this.audioOnly) return;
    this.audioOnly = Boolean(on);
    if (this.senders.video) await this.senders.video.replaceTrack(this.audioOnly ? null : this.local.video);
    this.sendMediaState();
  }

  sendMediaState() {
    if (!this.isJoined()) return;
    this.send({
      type: "media_state",
      audio: this.mediaState.audio,
      video: this.mediaState.video,
      audio_blocked: this.blocked.audio,
      video_blocked: this.blocked.video,
      screen: Boolean(this.local.screen),
      quality: this.quality,
      audio_only: this.audioOnly,
    });
  }

  /** Practitioners: turn a participant's microphone off, or remove them from the room. */
  moderate(action, participantId) {
    const type = action === "mute" ? "mute_participant" : "remove_participant";
    return this.isJoined() && this.send({ type, participant_id: participantId });
  }

  /** {participantId: audio level 0..1} of what this page receives now (from getStats). */
  async audioLevels() {
    const levels = {};
    if (!this.pc) return levels;
    const report = await this.pc.getStats();
    for (const s of report.values()) {
      if (s.type !== "inbound-rtp" || s.kind !== "audio" || typeof s.audioLevel !== "number") continue;
      const owner = this.trackOwners.get(s.mid);
      if (owner) levels[owner] = Math.max(levels[owner] ?? 0, s.audioLevel);
    }
    return levels;
  }

  sendChat(text, id) {
    if (!this.isJoined()) return false;
    return this.send({ type: "chat", text, id });
  }

  /** A practitioner lets a waiting client in (`admit`) or turns it away (`deny`). */
  admit(participantId) {
    return this.isJoined() && this.send({ type: "admit", participant_id: participantId });
  }

  deny(participantId) {
    return this.isJoined() && this.send({ type: "deny", participant_id: participantId });
  }

  /** A practitioner asks to record into the journal of `clientId` (everyone is asked). */
  recordRequest(clientId) {
    return this.isJoined() && this.send({ type: "record_request", client_id: clientId });
  }

  /** This participant's answer; `accept: false` after accepting withdraws (it stops). */
  recordConsent(recordingId, accept) {
    return this.isJoined() && this.send({ type: "record_consent", recording_id: recordingId, accept: Boolean(accept) });
  }

  /** Stop (a practitioner) or withdraw from (anyone) the recording. */
  recordStop(recordingId) {
    return this.isJoined() && this.send({ type: "record_stop", recording_id: recordingId });
  }

  /** Leave for good: the server frees everything at once (`leave` → `bye` → close). */
  leave() {
    if (this.state === "ended") return;
    this.send({ type: "leave" });
    this.end("left");
  }

  isJoined() {
    return this.state === "alone" || this.state === "in_session";
  }

  // -- connection ---------------------------------------------------------------------------

  connect() {
    const gen = ++this.gen;
    this.published = false;
    this.offers = [];
    this.negotiating = false;
    this.lastHeard = Date.now();
    // A redirect names the node that serves the room for the next connection only; after a
    // loss the page starts again at its own node, which knows where the room lives now.
    const url = this.redirectUrl || this.wsUrl;
    this.redirectUrl = null;
    let ws;
    try {
      ws = new WebSocket(url);
    } catch {
      this.scheduleReconnect();
      return;
    }
    this.ws = ws;
    ws.onopen = () => {
      if (gen !== this.gen) return;
      const token = this.resumeToken || this.joinToken;
      if (!token) {
        this.end("auth");
        return;
      }
      // Both tokens are single use: once sent, only a newer resume token helps.
      this.resumeToken = null;
      this.joinToken = null;
      this.hooks.onResumeToken?.(null);
      this.send({ type: "hello", v: 1, token });
      this.every(PING_EVERY_MS, gen, () => {
        if (Date.now() - this.lastHeard > SILENCE_LIMIT_MS) this.connectionLost(gen, "silence");
        else this.send({ type: "ping" });
      });
    };
    ws.onmessage = (ev) => {
      if (gen !== this.gen) return;
      this.lastHeard = Date.now();
      let msg;
      try {
        msg = JSON.parse(ev.data);
      } catch {
        return;
      }
      this.handle(msg, gen).catch((err) => {
        console.error("fortrolig: handling", msg.type, err);
        this.connectionLost(gen, "handler");
      });
    };
    ws.onclose = (ev) => {
      if (gen !== this.gen || this.state === "ended") return;
      if (ev.code === CLOSE_REDIRECT && this.redirectUrl) {
        this.teardown();
        this.connect(); // at once: this is not a failure
        return;
      }
      if (ev.code === 1000 && this.byeReason) this.end(this.byeReason);
      else if (FINAL_CLOSE[ev.code]) this.end(ev.code === 4401 && this.joinedOnce ? "failed" : FINAL_CLOSE[ev.code]);
      else this.connectionLost(gen, `close ${ev.code}`);
    };
  }

  async handle(msg, gen) {
    switch (msg.type) {
      case "welcome":
        this.selfId = msg.participant_id;
        this.roomId = msg.room_id;
        this.role = msg.role;
        this.iceServers = Array.isArray(msg.ice_servers) ? msg.ice_servers : [];
        // "relay": the room forces TURN, so this browser gathers relay candidates only (its
        // own addresses never leave it in a candidate). Anything else is the default.
        this.iceTransportPolicy = msg.ice_transport_policy === "relay" ? "relay" : "all";
        this.storeResumeToken(msg.resume_token);
        this.hooks.onWelcome?.(msg);
        this.send(this.name ? { type: "join", name: this.name } : { type: "join" });
        break;
      case "waiting":
        // A client in a room with a waiting room: no peer connection until `joined`.
        this.closePeer();
        this.setState("lobby");
        break;
      case "waiting_room": // to practitioners: the clients waiting now
        this.hooks.onWaitingClients?.(Array.isArray(msg.clients) ? msg.clients : []);
        break;
      case "joined":
        this.participants = new Map(msg.participants.map((p) => [p.id, p]));
        this.joinedOnce = true;
        this.screenShare = msg.screen_share === "practitioners" ? "practitioners" : "everyone";
        this.updatePresence(); // joined from here on: the roster hook may already send chat
        this.hooks.onRoster?.([...this.participants.values()]);
        this.sendMediaState();
        await this.publish(gen);
        break;
      case "answer":
        if (this.published || !this.pc) return;
        await this.pc.setRemoteDescription({ type: "answer", sdp: msg.sdp });
        if (gen !== this.gen) return;
        this.published = true;
        await this.pump(gen);
        break;
      case "offer":
        this.offers.push(msg.sdp);
        await this.pump(gen);
        break;
      case "participant_joined":
        this.participants.set(msg.participant.id, msg.participant);
        this.hooks.onParticipantJoined?.(msg.participant);
        this.updatePresence();
        break;
      case "participant_away": {
        // Their connection dropped; the server holds their place for grace_s seconds.
        const p = this.participants.get(msg.participant_id);
        if (p) this.participants.set(p.id, { ...p, away: true });
        this.hooks.onParticipantAway?.(msg.participant_id, msg.grace_s);
        this.updatePresence();
        break;
      }
      case "participant_left":
        this.participants.delete(msg.participant_id);
        this.hooks.onParticipantLeft?.(msg.participant_id, msg.reason);
        this.updatePresence();
        break;
      case "participant_updated":
        if (msg.participant.id === this.selfId) return;
        this.participants.set(msg.participant.id, msg.participant);
        this.hooks.onParticipantUpdated?.(msg.participant);
        break;
      case "chat":
        this.hooks.onChat?.(msg);
        break;
      case "screen_share":
        this.screenShare = msg.allowed === "practitioners" ? "practitioners" : "everyone";
        this.hooks.onScreenShare?.(this.screenShare, msg.by);
        break;
      case "recording":
        this.hooks.onRecording?.(msg);
        break;
      case "resume_token":
        this.storeResumeToken(msg.token);
        break;
      case "bye":
        this.byeReason = msg.reason;
        break;
      case "muted":
        // A practitioner turned this microphone off; only this page turns it on again.
        this.setAudioEnabled(false);
        this.hooks.onMuted?.(msg.by);
        break;
      case "redirect":
        // Another node serves the room: go there with the resume token it gave (close 4307).
        if (typeof msg.ws_url === "string" && /^wss?:\/\//.test(msg.ws_url)) {
          this.redirectUrl = msg.ws_url;
          this.redirects = (this.redirects || 0) + 1;
          this.storeResumeToken(msg.resume_token);
        }
        break;
      case "error":
        this.onServerError(msg);
        break;
      default:
        break; // pong and anything newer
    }
  }

  onServerError(msg) {
    if (msg.code === "room_closed") this.byeReason = "room_ended";
    else if (msg.code === "media_failed") this.mediaFailedNotice = true; // close 4500 follows
    else if (msg.ref === "candidate") return; // e.g. a TCP candidate the server cannot parse
    else if (msg.ref === "join" && msg.code === "already_joined") {
      // Our previous connection is still registered (it died silently): try again shortly
      // with the resume token this welcome gave us.
      this.connectionLost(this.gen, "join refused: already_joined");
      return;
    }
    else if (msg.ref === "offer" || msg.ref === "answer") console.error("fortrolig: SDP refused", msg.code);
    this.hooks.onError?.(msg);
  }

  storeResumeToken(token) {
    if (typeof token !== "string" || !token) return;
    this.resumeToken = token;
    this.hooks.onResumeToken?.(token);
  }

  updatePresence() {
    if (this.state === "ended") return;
    const present = [...this.participants.values()].some((p) => !p.away);
    this.setState(present ? "in_session" : "alone");
  }

  // -- media --------------------------------------------------------------------------------

  async publish(gen) {
    this.closePeer();
    this.trackOwners.clear();
    this.screenMids.clear();
    // The server's ice_servers is the complete list: never let the browser add a default.
    const config = {
      iceServers: this.iceServers,
      iceTransportPolicy: this.iceTransportPolicy,
      bundlePolicy: "max-bundle",
    };
    // createEncodedStreams (browsers without RTCRtpScriptTransform) wants the flag.
    if (this.e2ee?.api === "streams") config.encodedInsertableStreams = true;
    const pc = new RTCPeerConnection(config);
    this.pc = pc;
    const stream = this.local.stream;
    this.senders = { audio: null, video: null, screen: null };
    // A browser that can share a screen always offers a camera m-line, so that the screen's is
    // the second video (that is how the SFU tells them apart).
    const screenLine = this.screenCapable;
    if (this.local.hasAudio) {
      // Audio first when the network is short: a higher share of the estimate than video's.
      const sendEncodings = [{ priority: "high", networkPriority: "high" }];
      const tx = pc.addTransceiver(this.local.audio || "audio", { direction: "sendonly", streams: [stream], sendEncodings });
      this.senders.audio = tx.sender;
      this.e2ee?.attachSender(tx.sender, "audio");
    }
    if (this.local.hasVideo || screenLine) {
      // A camera that is off right now still gets its m-line: turning it on later is a
      // replaceTrack, and the client never re-offers.
      const tx = pc.addTransceiver(this.local.video || "video", { direction: "sendonly", streams: [stream] });
      this.senders.video = tx.sender;
      if (this.e2ee) {
        this.e2ee.attachSender(tx.sender, "video");
        preferVp8(tx); // the clear header of an encrypted frame is VP8's
      }
      if (!this.local.video || this.audioOnly) await tx.sender.replaceTrack(null);
    }
    if (screenLine) {
      // The screen's m-line, sending only while shared (a track put on with replaceTrack).
      const tx = pc.addTransceiver(this.local.screen || "video", { direction: "sendonly", streams: [new MediaStream()] });
      this.senders.screen = tx.sender;
      if (this.e2ee) {
        this.e2ee.attachSender(tx.sender, "video");
        preferVp8(tx);
      }
      if (!this.local.screen) await tx.sender.replaceTrack(null);
    }
    if (!this.local.hasAudio && !this.local.hasVideo && !screenLine) {
      pc.addTransceiver("audio", { direction: "recvonly" }); // nothing to send, still receive
    }
    const attached = new WeakSet();
    pc.ontrack = (ev) => {
      if (gen !== this.gen) return;
      const stream = ev.streams[0];
      if (!stream) return;
      // The SFU names the stream by participant id, a screen's "<participant id>-screen".
      // Keyed by mid, not track id: a participant who resumed is published again under the
      // same track ids on new m-lines.
      const screen = stream.id.endsWith(SCREEN_SUFFIX);
      const owner = screen ? stream.id.slice(0, -SCREEN_SUFFIX.length) : stream.id;
      this.trackOwners.set(ev.transceiver.mid, owner);
      if (this.e2ee && !attached.has(ev.receiver)) {
        attached.add(ev.receiver); // a receiver is attached once, right when it appears
        this.e2ee.attachReceiver(ev.receiver, ev.track.kind, owner);
      }
      if (screen) this.screenMids.add(ev.transceiver.mid);
      if (screen) this.hooks.onRemoteScreen?.(owner, stream, ev.track);
      else this.hooks.onRemoteTrack?.(owner, stream, ev.track);
    };
    pc.onicecandidate = (ev) => {
      if (gen !== this.gen) return;
      // Only the three protocol fields: unknown fields (usernameFragment) are a protocol error.
      const c = ev.candidate;
      if (c && c.candidate) this.send({ type: "candidate", candidate: c.candidate, sdpMid: c.sdpMid, sdpMLineIndex: c.sdpMLineIndex });
      else if (!c) this.send({ type: "candidate", candidate: "", sdpMid: null, sdpMLineIndex: null });
    };
    pc.onconnectionstatechange = () => this.onPeerState(pc, gen);
    await pc.setLocalDescription(await pc.createOffer());
    if (gen !== this.gen) return;
    const screenTx = pc.getTransceivers().find((t) => t.sender === this.senders.screen);
    if (screenTx?.mid) this.screenMids.add(screenTx.mid);
    this.send({ type: "offer", sdp: pc.localDescription.sdp });
    this.after(MEDIA_CONNECT_LIMIT_MS, gen, () => {
      if (pc.connectionState !== "connected") this.connectionLost(gen, "media timeout");
    });
  }

  /** Answer queued server offers one by one, and only after our publish answer was applied. */
  async pump(gen) {
    if (!this.published || this.negotiating) return;
    this.negotiating = true;
    try {
      while (this.offers.length && gen === this.gen) {
        const sdp = this.offers.shift();
        const pc = this.pc;
        await pc.setRemoteDescription({ type: "offer", sdp });
        await pc.setLocalDescription(await pc.createAnswer());
        if (gen !== this.gen) return;
        this.send({ type: "answer", sdp: pc.localDescription.sdp });
      }
    } finally {
      this.negotiating = false;
    }
  }

  onPeerState(pc, gen) {
    if (gen !== this.gen || pc !== this.pc) return;
    const state = pc.connectionState;
    if (state === "connected") {
      this.attempt = 0; // a working session resets the backoff
      this.hooks.onMediaConnected?.();
    } else if (state === "failed" || state === "closed") {
      this.connectionLost(gen, `peer ${state}`);
    } else if (state === "disconnected") {
      this.after(DISCONNECTED_GRACE_MS, gen, () => {
        if (pc.connectionState === "disconnected") this.connectionLost(gen, "peer disconnected");
      });
    }
  }

  // -- failure and reconnection ---------------------------------------------------------------

  connectionLost(gen, why) {
    if (gen !== this.gen || this.state === "ended") return;
    console.info("fortrolig: connection lost:", why);
    this.scheduleReconnect();
  }

  scheduleReconnect() {
    this.teardown();
    if (!this.resumeToken && !this.joinToken) {
      this.end("failed");
      return;
    }
    this.setState("reconnecting");
    const base = BACKOFF_MS[Math.min(this.attempt, BACKOFF_MS.length - 1)];
    this.attempt += 1;
    const delay = base / 2 + Math.random() * (base / 2);
    const gen = this.gen;
    this.after(delay, gen, () => this.connect());
  }

  /** Close the WebSocket and peer connection of the current attempt; no state change. */
  teardown() {
    this.gen += 1;
    for (const id of this.timers) {
      clearTimeout(id);
      clearInterval(id);
    }
    this.timers.clear();
    this.closePeer();
    if (this.ws) {
      const ws = this.ws;
      this.ws = null;
      ws.onopen = ws.onmessage = ws.onclose = null;
      if (ws.readyState === WebSocket.OPEN || ws.readyState === WebSocket.CONNECTING) ws.close(1000);
    }
    this.published = false;
    this.offers = [];
  }

  closePeer() {
    if (!this.pc) return;
    const pc = this.pc;
    this.pc = null;
    pc.ontrack = pc.onicecandidate = pc.onconnectionstatechange = null;
    pc.close();
  }

  end(reason) {
    if (this.state === "ended") return;
    this.endReason = reason;
    this.teardown();
    this.resumeToken = null;
    this.hooks.onResumeToken?.(null);
    this.setState("ended", reason);
  }

  setState(state, detail) {
    if (this.state === state && !detail) return;
    this.state = state;
    this.hooks.onState?.(state, detail);
  }

  send(msg) {
    const ws = this.ws;
    if (!ws || ws.readyState !== WebSocket.OPEN) return false;
    ws.send(JSON.stringify(msg));
    return true;
  }

  after(ms, gen, fn) {
    const id = setTimeout(() => {
      this.timers.delete(id);
      if (gen === this.gen) fn();
    }, ms);
    this.timers.add(id);
  }

  every(ms, gen, fn) {
    const id = setInterval(() => (gen === this.gen ? fn() : clearInterval(id)), ms);
    this.timers.add(id);
  }

  // -- diagnostics (window.fortrolig) ---------------------------------------------------------

  /** The mids of the m-lines receiving now (a left participant's stay behind, inactive). */
  receivingMids() {
    const mids = new Set();
    for (const t of this.pc?.getTransceivers() ?? []) {
      if (t.currentDirection === "recvonly" || t.currentDirection === "sendrecv") mids.add(t.mid);
    }
    return mids;
  }

  /** A summary of getStats(): what the tests and a support person need, nothing secret. */
  async stats() {
    const pc = this.pc;
    if (!pc) return null;
    const report = await pc.getStats();
    const out = {
      connectionState: pc.connectionState,
      iceTransportPolicy: pc.getConfiguration().iceTransportPolicy,
      inbound: [],
      outbound: [],
      remoteInbound: [],
      sources: [],
      transport: null,
      pair: null,
    };
    // A participant who left or resumed on a new peer connection leaves its old m-lines behind
    // as inactive: their inbound-rtp entries stay in getStats() with frozen counters (and, after
    // a resume, the same track ids). Only an m-line that is receiving now belongs to someone.
    const receiving = this.receivingMids();
    for (const s of report.values()) {
      if (s.type === "inbound-rtp") {
        const active = receiving.has(s.mid);
        out.inbound.push({
          kind: this.screenMids.has(s.mid) ? "screen" : s.kind, // "audio", "video" (camera), "screen"
          active,
          ssrc: s.ssrc,
          mid: s.mid,
          participantId: active ? this.trackOwners.get(s.mid) || null : null,
          packetsReceived: s.packetsReceived,
          bytesReceived: s.bytesReceived,
          framesDecoded: s.framesDecoded,
          keyFramesDecoded: s.keyFramesDecoded,
          packetsLost: s.packetsLost,
          nackCount: s.nackCount,
          pliCount: s.pliCount,
          firCount: s.firCount,
          framesReceived: s.framesReceived,
          framesDropped: s.framesDropped,
          freezeCount: s.freezeCount,
          totalFreezesDuration: s.totalFreezesDuration,
          jitterBufferDelay: s.jitterBufferDelay,
          jitterBufferEmittedCount: s.jitterBufferEmittedCount,
          lastPacketReceivedTimestamp: s.lastPacketReceivedTimestamp,
          frameWidth: s.frameWidth,
          frameHeight: s.frameHeight,
          totalSamplesReceived: s.totalSamplesReceived,
          concealedSamples: s.concealedSamples,
          audioLevel: s.audioLevel,
          totalAudioEnergy: s.totalAudioEnergy,
        });
      } else if (s.type === "outbound-rtp") {
        out.outbound.push({
          kind: this.screenMids.has(s.mid) ? "screen" : s.kind,
          bytesSent: s.bytesSent,
          packetsSent: s.packetsSent,
          framesEncoded: s.framesEncoded,
          frameWidth: s.frameWidth,
          frameHeight: s.frameHeight,
          targetBitrate: s.targetBitrate,
          nackCount: s.nackCount, // NACKs the SFU sent for what this page sends
          retransmittedPacketsSent: s.retransmittedPacketsSent,
          qualityLimitationReason: s.qualityLimitationReason,
          timestamp: s.timestamp,
        });
      } else if (s.type === "remote-inbound-rtp") {
        // The SFU's receiver reports on what this page sends: loss and round-trip time.
        out.remoteInbound.push({ kind: s.kind, fractionLost: s.fractionLost, roundTripTime: s.roundTripTime, packetsLost: s.packetsLost });
      } else if (s.type === "media-source") {
        // What the camera and microphone handed to the encoder: a microphone whose samples
        // fall behind the clock (a starved audio thread) shows here before it is heard.
        out.sources.push({
          kind: s.kind,
          totalSamplesDuration: s.totalSamplesDuration,
          frames: s.frames,
          framesPerSecond: s.framesPerSecond,
          timestamp: s.timestamp,
        });
      } else if (s.type === "transport") {
        out.transport = {
          srtpCipher: s.srtpCipher,
          dtlsCipher: s.dtlsCipher,
          tlsVersion: s.tlsVersion,
          dtlsState: s.dtlsState,
          iceState: s.iceState,
          selectedCandidatePairId: s.selectedCandidatePairId,
        };
      } else if (s.type === "candidate-pair" && s.nominated && s.state === "succeeded") {
        out.pair = {
          availableOutgoingBitrate: s.availableOutgoingBitrate,
          currentRoundTripTime: s.currentRoundTripTime,
        };
      }
    }
    out.selected = selectedPair(report);
    return out;
  }

  /** Drop the signaling connection as a network failure would (tests, support). */
  dropSignaling() {
    if (this.ws) this.ws.close(4000, "dropped by the page");
  }
}

/** Offer VP8 (and its retransmissions) only on this video transceiver. */
function preferVp8(transceiver) {
  const caps = globalThis.RTCRtpReceiver?.getCapabilities?.("video");
  if (!caps || typeof transceiver.setCodecPreferences !== "function") return;
  const codecs = caps.codecs.filter((c) => /^video\/(vp8|rtx)$/i.test(c.mimeType));
  try {
    if (codecs.some((c) => /vp8/i.test(c.mimeType))) transceiver.setCodecPreferences(codecs);
  } catch (err) {
    console.warn("fortrolig: VP8 preference refused", err);
  }
}

/**
 * The transport's selected candidate pair: each side's candidate type ("relay" when media goes
 * through TURN) and how this browser reaches its TURN server (udp, tcp or tls). No addresses.
 */
function selectedPair(report) {
  let pair = null;
  for (const s of report.values()) {
    if (s.type === "transport" && s.selectedCandidatePairId) pair = report.get(s.selectedCandidatePairId);
  }
  if (!pair) return null;
  const local = report.get(pair.localCandidateId) || {};
  const remote = report.get(pair.remoteCandidateId) || {};
  return {
    state: pair.state,
    localCandidateType: local.candidateType,
    localRelayProtocol: local.relayProtocol,
    remoteCandidateType: remote.candidateType,
  };
}
