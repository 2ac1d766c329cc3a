// Connection quality, from getStats every two seconds.
//
// This page's own quality is the worse of its uplink, as the SFU's receiver reports describe it
// (remote-inbound-rtp: fraction lost, round-trip time) with the browser's bandwidth estimate
// (availableOutgoingBitrate while it sends video), and its downlink (packets lost of what it
// receives from those whose own uplink is good: the rest lost theirs before the SFU). The page tells the others its level in media_state; each remote tile shows the worse
// of what that participant reports and what this page receives from them.
//
// When the uplink is too poor for video for a while, the page stops sending video (audio only,
// the camera stays on: Call.setAudioOnly) and says so; it tries video again by itself after a
// while (sooner when asked), backing off each time it has to fall back again. Sound is never
// given up: it needs a few tens of kbit/s and the SFU forwards it first.

import "./strings-quality.js";

const EVERY_MS = 2_000;
const LEVELS = ["unknown", "good", "fair", "poor"];
const FAIR = { lossPct: 3, rttMs: 350, bps: 300_000 };
const POOR = { lossPct: 10, rttMs: 700, bps: 150_000 };
// Too poor for video: this much uplink loss, or an estimate under what 180p needs, for this long.
const NO_VIDEO = { lossPct: 20, bps: 100_000, samples: 3 };
const RETRY_MS = [30_000, 60_000, 120_000]; // audio only: try video again after this long
const MIN_PACKETS = 20; // fewer received in a sample say nothing about loss

/** The level of one set of measurements (any may be null: not measured). */
export function grade({ lossPct = null, rttMs = null, bps = null }) {
  if (lossPct === null && rttMs === null && bps === null) return "unknown";
  const over = (limit) =>
    (lossPct ?? 0) >= limit.lossPct || (rttMs ?? 0) >= limit.rttMs || (bps !== null && bps < limit.bps);
  if (over(POOR)) return "poor";
  if (over(FAIR)) return "fair";
  return "good";
}

/** The worse of two levels ("unknown" loses to any measured one). */
export function worse(a, b) {
  return LEVELS.indexOf(a) >= LEVELS.indexOf(b) ? a : b;
}

/**
 * What one getStats report says, against the previous one: uplink loss and RTT, the estimate,
 * and per remote participant the loss of what arrives from them (percent).
 */
export function measure(report, previous, owners, receiving) {
  const counts = new Map(); // participant id -> {lost, received}
  let upLoss = null;
  let rtt = null;
  let bps = null;
  for (const s of report.values()) {
    if (s.type === "remote-inbound-rtp") {
      if (typeof s.fractionLost === "number") upLoss = Math.max(upLoss ?? 0, s.fractionLost * 100);
      if (typeof s.roundTripTime === "number") rtt = Math.max(rtt ?? 0, s.roundTripTime * 1000);
    } else if (s.type === "candidate-pair" && s.nominated && s.state === "succeeded") {
      if (typeof s.currentRoundTripTime === "number") rtt = Math.max(rtt ?? 0, s.currentRoundTripTime * 1000);
      if (typeof s.availableOutgoingBitrate === "number") bps = s.availableOutgoingBitrate;
    } else if (s.type === "inbound-rtp" && receiving.has(s.mid)) {
      const owner = owners.get(s.mid);
      if (!owner) continue;
      const c = counts.get(owner) || { lost: 0, received: 0 };
      c.lost += Math.max(0, s.packetsLost || 0);
      c.received += s.packetsReceived || 0;
      counts.set(owner, c);
    }
  }
  const down = new Map();
  for (const [owner, c] of counts) {
    const before = previous?.counts.get(owner);
    if (!before) continue;
    const lost = Math.max(0, c.lost - before.lost);
    const received = Math.max(0, c.received - before.received);
    if (lost + received >= MIN_PACKETS) down.set(owner, (100 * lost) / (lost + received));
  }
  return { counts, upLoss, rtt, bps, down };
}

export class QualityUi {
  /**
   * @param {object} opts
   *   call: () => the Call (or null); tiles: the Tiles; t: i18n lookup;
   *   notice: {root, text, retry} elements of the room's network notice; onChange(): re-render
   */
  constructor({ call, tiles, t, notice, onChange }) {
    this.call = call;
    this.tiles = tiles;
    this.t = t;
    this.notice = notice;
    this.onChange = onChange;
    this.pc = null;
    this.previous = null;
    this.levels = []; // this page's last two levels: the shown one is the worse
    this.level = "unknown";
    this.peers = new Map(); // participant id -> level of what arrives from them
    this.tooPoor = 0; // consecutive samples too poor for video
    this.retries = 0;
    this.retryAt = 0;
    this.downPoor = false;
    notice.retry.addEventListener("click", () => this.tryVideo());
    setInterval(() => this.tick().catch((err) => console.warn("fortrolig: quality", err)), EVERY_MS);
  }

  async tick() {
    const call = this.call();
    const pc = call?.pc;
    if (pc !== this.pc) this.reset(pc);
    if (!call?.isJoined() || !pc || pc.connectionState !== "connected") return;
    const receiving = call.receivingMids();
    const report = await pc.getStats();
    if (pc !== call.pc) return;
    const m = measure(report, this.previous, call.trackOwners, receiving);
    const first = this.previous === null;
    this.previous = m;
    if (first) return; // loss needs two samples
    const sendingVideo = Boolean(call.senders.video?.track) && !call.audioOnly;
    const up = grade({ lossPct: m.upLoss, rttMs: m.rtt, bps: sendingVideo ? m.bps : null });
    // What arrives through the SFU lost packets on the sender's uplink too: only the loss from
    // those whose own uplink is good is this page's downlink, and the cleanest of them counts.
    const mine = [...m.down].filter(([id]) => call.participants.get(id)?.quality === "good").map(([, loss]) => loss);
    const downLoss = mine.length ? Math.min(...mine) : null;
    const down = downLoss === null ? "unknown" : grade({ lossPct: downLoss });
    this.levels = [...this.levels.slice(-1), worse(up, down)];
    this.level = this.levels.reduce(worse, "unknown");
    call.setQuality(this.level);
    this.peers = new Map([...m.down].map(([id, loss]) => [id, grade({ lossPct: loss })]));
    this.fallBack(call, m, sendingVideo);
    this.downPoor = (downLoss ?? 0) >= NO_VIDEO.lossPct;
    this.render();
  }

  /** Too poor for video for a while: audio only; after a while, video again. */
  fallBack(call, m, sendingVideo) {
    const poor = (m.upLoss ?? 0) >= NO_VIDEO.lossPct || (m.bps !== null && m.bps < NO_VIDEO.bps);
    this.tooPoor = sendingVideo && poor ? this.tooPoor + 1 : 0;
    if (this.tooPoor >= NO_VIDEO.samples) {
      this.tooPoor = 0;
      this.retryAt = Date.now() + RETRY_MS[Math.min(this.retries, RETRY_MS.length - 1)];
      this.retries += 1;
      call.setAudioOnly(true).then(() => this.onChange());
    } else if (call.audioOnly && Date.now() >= this.retryAt) {
      this.tryVideo();
    } else if (sendingVideo && !poor && this.level === "good") {
      this.retries = 0; // video holds again: the next fallback waits the shortest
    }
  }

  /** Send video again (the participant asked, or the wait is over). */
  tryVideo() {
    const call = this.call();
    if (!call?.audioOnly) return;
    this.tooPoor = 0;
    call.setAudioOnly(false).then(() => this.onChange());
  }

  reset(pc) {
    this.pc = pc;
    this.previous = null;
    this.levels = [];
    this.level = "unknown";
    this.peers = new Map();
    this.tooPoor = 0;
    this.downPoor = false;
    this.call()?.setQuality("unknown");
    this.render();
  }

  /** The level a remote participant's tile shows: theirs, or what arrives from them if worse. */
  levelOf(p) {
    return worse(p?.quality || "unknown", this.peers.get(p?.id) || "unknown");
  }

  render() {
    const call = this.call();
    for (const tile of this.tiles.values()) showLevel(this.t, tile.quality, this.levelOf(tile.info));
    showLevel(this.t, this.notice.self, this.level);
    const audioOnly = Boolean(call?.audioOnly);
    const key = audioOnly ? "net.audioonly" : this.downPoor ? "net.downpoor" : null;
    this.notice.root.hidden = !key;
    this.notice.root.dataset.key = key || "";
    if (key) this.notice.text.textContent = this.t(key);
    this.notice.retry.hidden = !audioOnly;
  }
}

/** A quality indicator element: three bars (CSS) and the level in words for everyone. */
export function showLevel(t, el, level) {
  if (!el) return;
  el.dataset.level = level;
  el.hidden = level === "unknown";
  const label = t("net.level", { level: t(`net.${level}`) });
  el.setAttribute("aria-label", label);
  el.title = label;
}
