// End-to-end encrypted chat over the signaling `chat` message (docs/protocol.md, section
// "End-to-end encrypted chat (browser convention)").
//
// Every page makes an ECDH P-256 key pair for its lifetime and announces the public key in a
// chat line {"k": ...}. Each pair of participants derives a pairwise AES-256-GCM key with
// HKDF-SHA-256 and shows a safety code computed from both public keys. Each sender encrypts its
// messages under its own random AES-256-GCM "sender key", which it hands to every other
// participant wrapped under their pairwise key ({"sk": kid, "w": {...}}); messages are
// {"kid", "iv", "c"}. One ciphertext per message however many are in the room, and a new
// sender key whenever someone leaves. The server only ever relays these envelopes.
//
// The same pairwise keys carry each participant's media key ({"mk": "index.id", "w": {...}},
// media-e2ee.js) and the room's encrypted control lines ({"kid", "iv", "c", "ctl": 1}: the
// practitioner's decision to go on without end-to-end encrypted media), so the safety code
// covers them too. An announcement says whether the page can encrypt media ({"k", "m": 1}).

const enc = new TextEncoder();
const dec = new TextDecoder("utf-8", { fatal: true });
const SUBTLE = globalThis.crypto.subtle;

const HKDF_INFO = enc.encode("fortrolig chat pairwise v1");
const SAFETY_LABEL = enc.encode("fortrolig safety code v1");
const MESSAGE_AAD = "fortrolig/chat/msg/v1";
const CONTROL_AAD = "fortrolig/chat/ctl/v1";
const SENDER_KEY_AAD = "fortrolig/chat/sk/v1";
const MEDIA_KEY_AAD = "fortrolig/media/key/v1";
const MAX_PENDING = 64; // messages held per sender until its key arrives
const MAX_PEERS = 16;

export function b64(bytes) {
  let s = "";
  const view = new Uint8Array(bytes);
  for (let i = 0; i < view.length; i++) s += String.fromCharCode(view[i]);
  return btoa(s);
}

export function unb64(text) {
  if (typeof text !== "string" || text.length > 8192) throw new Error("bad base64");
  const s = atob(text);
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
  return out;
}

function concat(...parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

function compareBytes(a, b) {
  for (let i = 0; i < Math.min(a.length, b.length); i++) if (a[i] !== b[i]) return a[i] - b[i];
  return a.length - b.length;
}

/** Both public keys in a fixed order, so that both sides compute the same values. */
function sortedPair(a, b) {
  return compareBytes(a, b) <= 0 ? concat(a, b) : concat(b, a);
}

/** A 12-digit code (about 40 bits) from both public keys, shown as "1234 5678 9012". */
export async function safetyCode(pubA, pubB) {
  const digest = new Uint8Array(await SUBTLE.digest("SHA-256", concat(SAFETY_LABEL, sortedPair(pubA, pubB))));
  let n = 0n;
  for (let i = 0; i < 8; i++) n = (n << 8n) | BigInt(digest[i]);
  const digits = (n % 10n ** 12n).toString().padStart(12, "0");
  return `${digits.slice(0, 4)} ${digits.slice(4, 8)} ${digits.slice(8)}`;
}

function randomId() {
  return b64(crypto.getRandomValues(new Uint8Array(8))).replace(/=+$/, "");
}

function isObject(x) {
  return typeof x === "object" && x !== null && !Array.isArray(x);
}

export class ChatCrypto {
  /**
   * @param {object} hooks
   *   send(text): send a chat line (the envelope) through signaling
   *   onMessage({fromId, text, ts, id}): a decrypted message
   *   onPeerKey({peerId, code, changed}): a peer's key (and safety code) is known or changed
   *   onUndecryptable({fromId, ts}): a line that is not a valid envelope for us
   *   onPeerReady({peerId, media}): a peer announced (again); media: it encrypts media
   *   onMediaKey({fromId, index, raw}): a peer's media key, unwrapped
   *   onControl({fromId, data}): a control line (a decrypted JSON object)
   * @param {object} opts  mediaCapable: this page encrypts media end to end
   */
  constructor(hooks, opts = {}) {
    this.hooks = hooks;
    this.mediaCapable = Boolean(opts.mediaCapable);
    this.selfId = null;
    this.peers = new Map(); // id -> {pub, pairKey, code, senderKeys: Map, pending: []}
    this.keyPair = null;
    this.publicRaw = null;
    this.senderKid = null;
    this.senderRaw = null;
    this.senderKey = null;
    this.ownKeys = new Map(); // kid -> CryptoKey (to read the echo of our own lines)
  }

  async init() {
    this.keyPair = await SUBTLE.generateKey({ name: "ECDH", namedCurve: "P-256" }, false, ["deriveBits"]);
    this.publicRaw = new Uint8Array(await SUBTLE.exportKey("raw", this.keyPair.publicKey));
    await this.rotate();
  }

  /** A fresh sender key (after someone left, so that they cannot read what follows). */
  async rotate() {
    this.senderRaw = crypto.getRandomValues(new Uint8Array(32));
    this.senderKid = randomId();
    this.senderKey = await SUBTLE.importKey("raw", this.senderRaw, "AES-GCM", false, ["encrypt", "decrypt"]);
    this.ownKeys.set(this.senderKid, this.senderKey);
    while (this.ownKeys.size > 8) this.ownKeys.delete(this.ownKeys.keys().next().value);
  }

  setSelf(id) {
    this.selfId = id;
  }

  announcement() {
    const env = { k: b64(this.publicRaw) };
    if (this.mediaCapable) env.m = 1;
    return JSON.stringify(env);
  }

  safetyCodes() {
    const out = {};
    for (const [id, peer] of this.peers) if (peer.code) out[id] = peer.code;
    return out;
  }

  hasKeyFor(peerId) {
    return Boolean(this.peers.get(peerId)?.pairKey);
  }

  /** Someone left: forget them and give the others a new sender key. */
  forget(peerId) {
    this.queue = (this.queue || Promise.resolve()).then(() => this.forgetNow(peerId));
    return this.queue;
  }

  async forgetNow(peerId) {
    if (!this.peers.delete(peerId)) return;
    await this.rotate();
    await this.distribute([...this.peers.keys()]);
  }

  /** The encrypted envelope for ``text`` (a JSON string to send as chat text). */
  async encrypt(text, control = false) {
    const iv = crypto.getRandomValues(new Uint8Array(12));
    const aad = enc.encode(`${control ? CONTROL_AAD : MESSAGE_AAD}|${this.selfId}|${this.senderKid}`);
    const c = await SUBTLE.encrypt({ name: "AES-GCM", iv, additionalData: aad }, this.senderKey, enc.encode(text));
    const env = { kid: this.senderKid, iv: b64(iv), c: b64(c) };
    if (control) env.ctl = 1;
    return JSON.stringify(env);
  }

  /** The envelope of a control line (``data``: a JSON object), for onControl on the others. */
  encryptControl(data) {
    return this.encrypt(JSON.stringify(data), true);
  }

  /** Handle one relayed chat line (a server `chat` message), strictly in arrival order. */
  receive(msg) {
    // A key announcement takes a few awaits to derive; the sender key that follows it from
    // the same peer must not overtake it.
    this.queue = (this.queue || Promise.resolve()).then(() => this.receiveNow(msg));
    return this.queue;
  }

  async receiveNow(msg) {
    let env;
    try {
      env = JSON.parse(msg.text);
    } catch {
      env = null;
    }
    try {
      if (isObject(env) && typeof env.k === "string") return await this.onAnnounce(msg.from_id, env.k, env.m === 1);
      if (isObject(env) && typeof env.sk === "string" && isObject(env.w)) return await this.onSenderKey(msg.from_id, env);
      if (isObject(env) && typeof env.mk === "string" && isObject(env.w)) return await this.onMediaKey(msg.from_id, env);
      if (isObject(env) && typeof env.kid === "string" && typeof env.c === "string") return await this.onCiphertext(msg, env);
    } catch (err) {
      console.warn("chat envelope rejected", err);
    }
    this.hooks.onUndecryptable({ fromId: msg.from_id, ts: msg.ts });
  }

  async onAnnounce(fromId, keyB64, media) {
    if (fromId === this.selfId) return;
    const raw = unb64(keyB64);
    if (raw.length !== 65 || raw[0] !== 4) throw new Error("not an uncompressed P-256 point");
    let peer = this.peers.get(fromId);
    const changed = Boolean(peer?.pub) && compareBytes(peer.pub, raw) !== 0;
    if (!peer || !peer.pairKey || changed) {
      if (!peer && this.peers.size >= MAX_PEERS) throw new Error("too many peers");
      const pairKey = await this.derivePairKey(raw);
      const code = await safetyCode(this.publicRaw, raw);
      peer = { pub: raw, pairKey, code, senderKeys: peer?.senderKeys ?? new Map(), pending: peer?.pending ?? [] };
      if (changed) peer.senderKeys.clear();
      this.peers.set(fromId, peer);
      this.hooks.onPeerKey({ peerId: fromId, code, changed });
    }
    peer.media = media;
    // Whenever a peer announces (it joined, resumed or reloaded), hand it our sender key.
    await this.distribute([fromId]);
    await this.hooks.onPeerReady?.({ peerId: fromId, media });
  }

  /** Whether a peer said it encrypts media (null: no announcement from it yet). */
  peerMedia(peerId) {
    const peer = this.peers.get(peerId);
    return peer?.pairKey ? Boolean(peer.media) : null;
  }

  async derivePairKey(peerRaw) {
    const peerKey = await SUBTLE.importKey("raw", peerRaw, { name: "ECDH", namedCurve: "P-256" }, false, []);
    const secret = await SUBTLE.deriveBits({ name: "ECDH", public: peerKey }, this.keyPair.privateKey, 256);
    const hkdf = await SUBTLE.importKey("raw", secret, "HKDF", false, ["deriveKey"]);
    const salt = await SUBTLE.digest("SHA-256", sortedPair(this.publicRaw, peerRaw));
    return SUBTLE.deriveKey(
      { name: "HKDF", hash: "SHA-256", salt, info: HKDF_INFO },
      hkdf,
      { name: "AES-GCM", length: 256 },
      false,
      ["encrypt", "decrypt"],
    );
  }

  /** Send our current sender key to ``peerIds``, each copy wrapped under its pairwise key. */
  async distribute(peerIds) {
    const w = await this.wrapFor(peerIds, SENDER_KEY_AAD, this.senderKid, this.senderRaw);
    if (Object.keys(w).length) this.hooks.send(JSON.stringify({ sk: this.senderKid, w }));
  }

  /** Hand our media key (``index``, 32 bytes) to ``peerIds``, each copy under its pairwise key. */
  async sendMediaKey(peerIds, index, raw) {
    const kid = `${index & 0xff}.${randomId()}`;
    const w = await this.wrapFor(peerIds, MEDIA_KEY_AAD, kid, raw);
    if (Object.keys(w).length) this.hooks.send(JSON.stringify({ mk: kid, w }));
  }

  /** {peerId: {iv, c}}: ``raw`` wrapped for each peer whose pairwise key we have. */
  async wrapFor(peerIds, label, kid, raw) {
    const w = {};
    for (const id of peerIds) {
      const peer = this.peers.get(id);
      if (!peer?.pairKey) continue;
      const iv = crypto.getRandomValues(new Uint8Array(12));
      const aad = enc.encode(`${label}|${this.selfId}|${id}|${kid}`);
      const c = await SUBTLE.encrypt({ name: "AES-GCM", iv, additionalData: aad }, peer.pairKey, raw);
      w[id] = { iv: b64(iv), c: b64(c) };
    }
    return w;
  }

  /** Our copy of what a peer wrapped for us (null: none for us), 32 bytes checked. */
  async unwrapMine(fromId, env, label, kid) {
    const mine = env.w[this.selfId];
    if (!isObject(mine)) return null; // a copy for someone else
    const peer = this.peers.get(fromId);
    if (!peer?.pairKey) throw new Error("a key from a peer without a pairwise key");
    const aad = enc.encode(`${label}|${fromId}|${this.selfId}|${kid}`);
    const raw = new Uint8Array(
      await SUBTLE.decrypt({ name: "AES-GCM", iv: unb64(mine.iv), additionalData: aad }, peer.pairKey, unb64(mine.c)),
    );
    if (raw.byteLength !== 32) throw new Error("bad key length");
    return raw;
  }

  async onMediaKey(fromId, env) {
    if (fromId === this.selfId) return;
    const match = /^(\d{1,3})\.[A-Za-z0-9+/]{1,16}$/.exec(env.mk);
    if (!match || Number(match[1]) > 255) throw new Error("bad media key id");
    const raw = await this.unwrapMine(fromId, env, MEDIA_KEY_AAD, env.mk);
    if (raw) await this.hooks.onMediaKey?.({ fromId, index: Number(match[1]), raw });
  }

  async onSenderKey(fromId, env) {
    if (fromId === this.selfId) return;
    const raw = await this.unwrapMine(fromId, env, SENDER_KEY_AAD, env.sk);
    if (!raw) return;
    const peer = this.peers.get(fromId);
    const key = await SUBTLE.importKey("raw", raw, "AES-GCM", false, ["decrypt"]);
    peer.senderKeys.set(env.sk, key);
    while (peer.senderKeys.size > 8) peer.senderKeys.delete(peer.senderKeys.keys().next().value);
    const waiting = peer.pending.filter((m) => m.env.kid === env.sk);
    peer.pending = peer.pending.filter((m) => m.env.kid !== env.sk);
    for (const m of waiting) await this.decryptWith(key, m.msg, m.env);
  }

  async onCiphertext(msg, env) {
    if (msg.from_id === this.selfId) {
      const own = this.ownKeys.get(env.kid);
      if (!own) throw new Error("echo under an unknown own key");
      return this.decryptWith(own, msg, env);
    }
    let peer = this.peers.get(msg.from_id);
    const key = peer?.senderKeys.get(env.kid);
    if (key) return this.decryptWith(key, msg, env);
    // The sender's key may still be on its way (it follows the announcements): hold the line.
    if (!peer) {
      if (this.peers.size >= MAX_PEERS) throw new Error("too many peers");
      peer = { pub: null, pairKey: null, code: null, senderKeys: new Map(), pending: [] };
      this.peers.set(msg.from_id, peer);
    }
    if (peer.pending.length >= MAX_PENDING) throw new Error("too many pending lines");
    peer.pending.push({ msg, env });
  }

  async decryptWith(key, msg, env) {
    const control = env.ctl === 1;
    const aad = enc.encode(`${control ? CONTROL_AAD : MESSAGE_AAD}|${msg.from_id}|${env.kid}`);
    let text;
    try {
      const plain = await SUBTLE.decrypt({ name: "AES-GCM", iv: unb64(env.iv), additionalData: aad }, key, unb64(env.c));
      text = dec.decode(plain);
    } catch {
      this.hooks.onUndecryptable({ fromId: msg.from_id, ts: msg.ts });
      return;
    }
    if (control) return this.onControlLine(msg, text);
    this.hooks.onMessage({ fromId: msg.from_id, text, ts: msg.ts, id: msg.id });
  }

  onControlLine(msg, text) {
    if (msg.from_id === this.selfId) return; // our own echo
    let data;
    try {
      data = JSON.parse(text);
    } catch {
      data = null;
    }
    if (isObject(data)) this.hooks.onControl?.({ fromId: msg.from_id, data });
  }
}
