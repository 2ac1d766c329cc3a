// End-to-end encryption of media frames (docs/protocol.md, "End-to-end encrypted media").
// Pure: no DOM, no worker plumbing, so the worker (e2ee-worker.js) and the tests share it.
//
// Frame layout, as LiveKit and Jitsi lay it out so that an SFU keeps working:
//   clear header ‖ AES-256-GCM(ciphertext ‖ 16-byte tag) ‖ IV (12 bytes) ‖ key index (1 byte)
// The clear header is what the SFU and the receiving browser's depacketiser must read: 10 bytes
// of a VP8 keyframe (frame tag, start code, width, height), 3 of a VP8 delta frame (frame tag),
// 1 of an Opus frame (the TOC byte). It is the AES-GCM associated data, so it cannot be altered.
//
// Keys: every sender has its own 32-byte media key with a one-byte index. A new random key
// (index + 1) replaces it when someone leaves; when someone joins, it is ratcheted
// (key' = HKDF(key), index + 1), so a joiner cannot read what was sent before it came, and
// those already in the room follow the ratchet without a message.

const SUBTLE = globalThis.crypto.subtle;
const RATCHET_INFO = new TextEncoder().encode("fortrolig media ratchet v1");

export const IV_BYTES = 12;
export const TAG_BYTES = 16;
export const TRAILER_BYTES = IV_BYTES + 1;
export const KEYRING_SIZE = 16; // indices kept per sender (as LiveKit's keyring)
export const MAX_RATCHET_STEPS = 8; // how far a receiver follows a sender's ratchet by itself

/** How many leading bytes stay clear: what the SFU and the depacketiser read. */
export function clearBytes(kind, isKeyFrame, length) {
  const n = kind === "audio" ? 1 : isKeyFrame ? 10 : 3;
  return Math.min(n, length);
}

/** The next key of a ratchet: HKDF-SHA-256 of the current one (32 bytes in, 32 out). */
export async function ratchet(raw) {
  const base = await SUBTLE.importKey("raw", raw, "HKDF", false, ["deriveBits"]);
  const bits = await SUBTLE.deriveBits(
    { name: "HKDF", hash: "SHA-256", salt: new Uint8Array(32), info: RATCHET_INFO },
    base,
    256,
  );
  return new Uint8Array(bits);
}

async function aesKey(raw) {
  return SUBTLE.importKey("raw", raw, "AES-GCM", false, ["encrypt", "decrypt"]);
}

/** One sender's keys by index (at most KEYRING_SIZE, the oldest dropped first). */
export class Keyring {
  constructor() {
    this.keys = new Map(); // index -> {raw, key}
    this.latest = null; // the index set or derived last
  }

  async set(index, raw) {
    if (!(raw instanceof Uint8Array) || raw.length !== 32) throw new Error("a media key is 32 bytes");
    const i = index & 0xff;
    const key = await aesKey(raw);
    this.keys.delete(i); // re-inserted as the newest
    this.keys.set(i, { raw, key });
    this.latest = i;
    while (this.keys.size > KEYRING_SIZE) this.keys.delete(this.keys.keys().next().value);
  }

  get(index) {
    return this.keys.get(index)?.key ?? null;
  }

  /** The keys a few ratchet steps past the newest one, up to ``index``; none if too far. */
  async *ahead(index) {
    if (this.latest === null) return;
    const steps = (index - this.latest + 256) % 256;
    if (steps < 1 || steps > MAX_RATCHET_STEPS) return;
    let raw = this.keys.get(this.latest).raw;
    for (let i = 1; i <= steps; i++) raw = await ratchet(raw);
    yield { raw, key: await aesKey(raw) };
  }
}

/** Encrypt one encoded frame's bytes under ``key`` (index ``index``). */
export async function sealFrame(key, index, data, kind, isKeyFrame) {
  const bytes = new Uint8Array(data);
  const n = clearBytes(kind, isKeyFrame, bytes.length);
  const header = bytes.subarray(0, n);
  const iv = globalThis.crypto.getRandomValues(new Uint8Array(IV_BYTES));
  const sealed = new Uint8Array(
    await SUBTLE.encrypt({ name: "AES-GCM", iv, additionalData: header }, key, bytes.subarray(n)),
  );
  const out = new Uint8Array(n + sealed.length + TRAILER_BYTES);
  out.set(header, 0);
  out.set(sealed, n);
  out.set(iv, n + sealed.length);
  out[out.length - 1] = index & 0xff;
  return out.buffer;
}

/** The key index a sealed frame names, or null when it is too short to be one. */
export function frameKeyIndex(data, kind, isKeyFrame) {
  const bytes = new Uint8Array(data);
  const n = clearBytes(kind, isKeyFrame, bytes.length);
  if (bytes.length < n + TAG_BYTES + TRAILER_BYTES) return null;
  return bytes[bytes.length - 1];
}

/** Decrypt a sealed frame with ``key``; null when it does not authenticate. */
export async function openFrame(key, data, kind, isKeyFrame) {
  const bytes = new Uint8Array(data);
  const n = clearBytes(kind, isKeyFrame, bytes.length);
  if (bytes.length < n + TAG_BYTES + TRAILER_BYTES) return null;
  const end = bytes.length - TRAILER_BYTES;
  const iv = bytes.subarray(end, end + IV_BYTES);
  try {
    const plain = new Uint8Array(
      await SUBTLE.decrypt({ name: "AES-GCM", iv, additionalData: bytes.subarray(0, n) }, key, bytes.subarray(n, end)),
    );
    const out = new Uint8Array(n + plain.length);
    out.set(bytes.subarray(0, n), 0);
    out.set(plain, n);
    return out.buffer;
  } catch {
    return null;
  }
}

/**
 * Decrypt with the sender's keyring, following its ratchet a few steps when the frame names
 * an index past the newest key (a ratcheted key is kept only once a frame proved it right).
 */
export async function openWithKeyring(ring, data, kind, isKeyFrame) {
  const index = frameKeyIndex(data, kind, isKeyFrame);
  if (index === null) return null;
  const key = ring.get(index);
  if (key) return openFrame(key, data, kind, isKeyFrame);
  for await (const next of ring.ahead(index)) {
    const plain = await openFrame(next.key, data, kind, isKeyFrame);
    if (plain) await ring.set(index, next.raw);
    return plain;
  }
  return null;
}
