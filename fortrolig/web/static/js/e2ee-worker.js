// The media encryption worker: every encoded frame this page sends or receives passes through
// here (RTCRtpScriptTransform, or the streams of createEncodedStreams posted by media-e2ee.js).
// Keys arrive from the page as raw bytes; they never leave this worker again.

import { Keyring, openWithKeyring, sealFrame } from "./frame-crypto.js";

const state = {
  send: null, // {index, key}
  sendClear: false, // the room runs without end-to-end encryption (recording, a browser without it)
  clearAll: false,
  clearFrom: new Set(), // participants whose clear frames are accepted (they are being recorded)
  peers: new Map(), // participant id -> Keyring
  counts: { encrypted: 0, sentClear: 0, dropped: 0 },
  received: new Map(), // participant id -> {decrypted, clear, failed}
};

function countsOf(participantId) {
  let c = state.received.get(participantId);
  if (!c) {
    c = { decrypted: 0, clear: 0, failed: 0 };
    state.received.set(participantId, c);
  }
  return c;
}

function isKeyFrame(kind, frame) {
  return kind === "video" && frame.type === "key";
}

async function sendFrame(kind, frame, controller) {
  if (frame.data.byteLength === 0) return controller.enqueue(frame);
  if (state.sendClear) {
    state.counts.sentClear += 1;
    return controller.enqueue(frame);
  }
  if (!state.send) {
    state.counts.dropped += 1; // never clear by accident: nothing leaves before the key is set
    return;
  }
  frame.data = await sealFrame(state.send.key, state.send.index, frame.data, kind, isKeyFrame(kind, frame));
  state.counts.encrypted += 1;
  controller.enqueue(frame);
}

async function receiveFrame(kind, participantId, frame, controller) {
  if (frame.data.byteLength === 0) return controller.enqueue(frame);
  const c = countsOf(participantId);
  const ring = state.peers.get(participantId);
  const plain = ring ? await openWithKeyring(ring, frame.data, kind, isKeyFrame(kind, frame)) : null;
  if (plain) {
    frame.data = plain;
    c.decrypted += 1;
    return controller.enqueue(frame);
  }
  if (state.clearAll || state.clearFrom.has(participantId)) {
    c.clear += 1;
    return controller.enqueue(frame);
  }
  c.failed += 1; // dropped: the decoder asks for a keyframe once a key is there
}

function pipe({ readable, writable, side, kind, participantId }) {
  const transform =
    side === "send"
      ? (frame, controller) => sendFrame(kind, frame, controller)
      : (frame, controller) => receiveFrame(kind, participantId, frame, controller);
  readable
    .pipeThrough(new TransformStream({ transform }))
    .pipeTo(writable)
    .catch(() => {}); // the sender or receiver went away
}

async function handle(msg) {
  switch (msg.op) {
    case "stream":
      return pipe(msg);
    case "send_key":
      state.send = { index: msg.index & 0xff, key: await importAes(msg.raw) };
      return null;
    case "peer_key": {
      let ring = state.peers.get(msg.participantId);
      if (!ring) state.peers.set(msg.participantId, (ring = new Keyring()));
      return ring.set(msg.index, msg.raw);
    }
    case "forget":
      state.peers.delete(msg.participantId);
      return null;
    case "clear":
      state.sendClear = Boolean(msg.send);
      state.clearAll = Boolean(msg.all);
      state.clearFrom = new Set(msg.from || []);
      return null;
    case "stats":
      return { ...state.counts, received: Object.fromEntries(state.received) };
    case "try_open": {
      // Diagnostics (tests, support): can this page's keys open a frame? Never the plaintext.
      const ring = state.peers.get(msg.participantId);
      return Boolean(ring && (await openWithKeyring(ring, msg.data, msg.kind, msg.isKeyFrame)));
    }
    default:
      return null;
  }
}

function importAes(raw) {
  return crypto.subtle.importKey("raw", raw, "AES-GCM", false, ["encrypt"]);
}

// Messages are handled one at a time, in order: a key set before a frame arrives is there.
let queue = Promise.resolve();
self.onmessage = (ev) => {
  const msg = ev.data || {};
  queue = queue.then(async () => {
    let value = null;
    try {
      value = await handle(msg);
    } catch (err) {
      console.warn("e2ee worker:", msg.op, err);
    }
    if (msg.id !== undefined) self.postMessage({ id: msg.id, value });
  });
};

// RTCRtpScriptTransform: the page passed {side, kind, participantId} as the options.
self.onrtctransform = (ev) => {
  const t = ev.transformer;
  pipe({ readable: t.readable, writable: t.writable, ...t.options });
};
