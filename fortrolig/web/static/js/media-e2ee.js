// End-to-end encrypted media on the page's side (docs/protocol.md, "End-to-end encrypted
// media"): which browser API does it, this page's own media key, and the keys of the others.
//
// The frames are encrypted in e2ee-worker.js; here the page
// - attaches every sender and receiver to the worker (RTCRtpScriptTransform where the browser
//   has it, the streams of createEncodedStreams otherwise), right when each is created;
// - keeps its media key: index 0 at start, a ratchet step when someone joins (those present
//   follow it by themselves, the newcomer cannot go back), a new random key when someone leaves
//   or drops (handed to the others first and used half a second later, so that nobody misses
//   frames while it travels);
// - hands its key to every participant whose chat key it knows, wrapped under the pairwise key
//   of the chat (chat-crypto.js): the safety codes the participants compare cover it.

import { ratchet } from "./frame-crypto.js";

const SWITCH_DELAY_MS = 500;
// The worker answers its first message by then, or this page cannot encrypt (a worker the
// browser refuses to load, say under a policy it enforces, would leave the page waiting).
const WORKER_START_MS = 5_000;

/** "script" (RTCRtpScriptTransform), "streams" (createEncodedStreams) or null (neither). */
export function e2eeSupport() {
  if (typeof globalThis.RTCRtpScriptTransform === "function") return "script";
  const sender = globalThis.RTCRtpSender?.prototype;
  const receiver = globalThis.RTCRtpReceiver?.prototype;
  if (sender && receiver && "createEncodedStreams" in sender && "createEncodedStreams" in receiver) return "streams";
  return null;
}

/**
 * What the page can really do, said before joining: e2eeSupport()'s API, if the encryption
 * worker also starts and answers here; otherwise null.
 */
export async function e2eeAvailable() {
  const probe = new MediaE2ee({ sendKey: async () => {} });
  await probe.init();
  probe.close();
  return probe.api;
}

export class MediaE2ee {
  /**
   * @param {object} opts
   *   sendKey(peerIds, index, raw): hand our media key to these participants (chat-crypto.js)
   */
  constructor(opts) {
    this.sendKey = opts.sendKey;
    this.api = e2eeSupport();
    this.worker = null;
    this.current = null; // {index, raw}: the key we hand out (and use, or soon use)
    this.ready = new Set(); // participants we can hand keys to (their chat key is known)
    this.queue = Promise.resolve();
    this.calls = new Map();
    this.nextCall = 0;
    this.clear = { send: false, all: false, from: [] };
  }

  get supported() {
    return this.api !== null;
  }

  /** Start the worker with our first key; a worker that does not start leaves api null. */
  async init() {
    if (!this.api) return;
    let worker;
    try {
      worker = new Worker(new URL("./e2ee-worker.js", import.meta.url), { type: "module", name: "fortrolig-e2ee" });
    } catch (err) {
      console.warn("fortrolig: media encryption worker refused", err);
      this.api = null;
      return;
    }
    this.worker = worker;
    worker.onmessage = (ev) => {
      const done = this.calls.get(ev.data?.id);
      if (!done) return;
      this.calls.delete(ev.data.id);
      done(ev.data.value);
    };
    this.current = { index: 0, raw: crypto.getRandomValues(new Uint8Array(32)) };
    let timer;
    const failed = new Promise((resolve) => {
      worker.addEventListener("error", () => resolve(false), { once: true });
      timer = setTimeout(() => resolve(false), WORKER_START_MS);
    });
    const started = await Promise.race([this.call({ op: "send_key", index: 0, raw: this.current.raw }).then(() => true), failed]);
    clearTimeout(timer);
    if (!started) {
      console.warn("fortrolig: the media encryption worker did not start");
      this.close();
      this.api = null;
      this.current = null;
    }
  }

  /** Stop the worker (this page no longer encrypts or opens anything). */
  close() {
    this.worker?.terminate();
    this.worker = null;
    this.calls.clear();
  }

  /** Post to the worker and wait until it handled the message (messages stay in order). */
  call(msg) {
    if (!this.worker) return Promise.resolve(null);
    const id = ++this.nextCall;
    return new Promise((resolve) => {
      this.calls.set(id, resolve);
      this.worker.postMessage({ ...msg, id });
    });
  }

  attachSender(sender, kind) {
    this.attach(sender, { side: "send", kind });
  }

  attachReceiver(receiver, kind, participantId) {
    this.attach(receiver, { side: "receive", kind, participantId });
  }

  attach(endpoint, options) {
    if (this.api === "script") {
      endpoint.transform = new RTCRtpScriptTransform(this.worker, options);
    } else if (this.api === "streams") {
      const { readable, writable } = endpoint.createEncodedStreams();
      this.worker.postMessage({ op: "stream", readable, writable, ...options }, [readable, writable]);
    }
  }

  serial(fn) {
    this.queue = this.queue.then(fn).catch((err) => console.warn("fortrolig: media key", err));
    return this.queue;
  }

  /** Someone joined: one ratchet step, so that what was sent before stays theirs to miss. */
  peerJoined() {
    if (!this.api) return Promise.resolve();
    return this.serial(async () => {
      this.current = { index: (this.current.index + 1) & 0xff, raw: await ratchet(this.current.raw) };
      await this.call({ op: "send_key", index: this.current.index, raw: this.current.raw });
    });
  }

  /** A participant's chat key is known (it joined, resumed or reloaded): give it our key. */
  peerReady(peerId) {
    this.ready.add(peerId);
    if (!this.api) return Promise.resolve();
    return this.serial(() => this.sendKey([peerId], this.current.index, this.current.raw));
  }

  /** Someone left or dropped: forget their keys, and a new key for those who stay. */
  peerGone(peerId) {
    this.ready.delete(peerId);
    if (!this.api) return Promise.resolve();
    return this.serial(async () => {
      await this.call({ op: "forget", participantId: peerId });
      const next = { index: (this.current.index + 1) & 0xff, raw: crypto.getRandomValues(new Uint8Array(32)) };
      this.current = next;
      await this.sendKey([...this.ready], next.index, next.raw);
      await new Promise((resolve) => setTimeout(resolve, SWITCH_DELAY_MS));
      if (this.current === next) await this.call({ op: "send_key", index: next.index, raw: next.raw });
    });
  }

  /** A participant's media key, unwrapped by chat-crypto.js. */
  peerKey(peerId, index, raw) {
    if (!this.api) return Promise.resolve();
    return this.call({ op: "peer_key", participantId: peerId, index, raw });
  }

  /**
   * Which frames go without end-to-end encryption: ``send`` ours, ``all`` everyone's (the
   * practitioner let a browser without it in), ``from`` those of the participants listed
   * (they are being recorded).
   */
  setClear({ send = false, all = false, from = [] }) {
    this.clear = { send: Boolean(send), all: Boolean(all), from: [...from] };
    return this.call({ op: "clear", ...this.clear });
  }

  /** Frame counts: encrypted, sentClear, dropped, received {id: {decrypted, clear, failed}}. */
  stats() {
    return this.call({ op: "stats" });
  }

  /** Diagnostics: can this page's keys open a sealed frame of ``participantId``? */
  tryOpen(participantId, data, kind, isKeyFrame) {
    return this.call({ op: "try_open", participantId, data, kind, isKeyFrame });
  }
}
