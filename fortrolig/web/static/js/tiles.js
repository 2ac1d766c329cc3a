// The room's video tiles: one per remote participant (name, initials while there is no picture,
// muted / camera-off / blocked / away / audio-only flags, connection quality, who is speaking),
// the others' shared screens (screen-share.js), and the layout: a grid of 1-8 tiles (CSS picks
// the columns from the count and the screen's shape), or a stage with the others beside or under
// it — the tile this viewer pinned, else a shared screen. Every text goes in through textContent, never as HTML.

import { RemoteScreens } from "./screen-share.js";

/** A participant's name, else their role ("Practitioner", "Client"). */
export function displayName(t, p) {
  return p?.name || t(p?.role === "practitioner" ? "role.practitioner" : p?.role === "client" ? "role.client" : "name.unknown");
}

// "Camera blocked" (the browser refused it: they must allow it) differs from "Camera off".
export function renderFlags(t, el, audio, video, away = false, blocked = {}) {
  const parts = [];
  if (away) parts.push(t("tile.away"));
  if (!audio) parts.push(t(blocked.audio_blocked ? "tile.micblocked" : "tile.muted"));
  if (!video) parts.push(t(blocked.video_blocked ? "tile.camblocked" : "tile.camoff"));
  else if (blocked.audio_only) parts.push(t("tile.audioonly")); // camera on, network too poor
  el.textContent = parts.length ? `· ${parts.join(" · ")}` : "";
}

function initials(name) {
  return name
    .split(/\s+/)
    .filter(Boolean)
    .slice(0, 2)
    .map((w) => w[0].toUpperCase())
    .join("");
}

const SPEAKING_LEVEL = 0.04; // audio level (0..1) above which a tile shows as speaking

export class Tiles {
  /** @param {object} opts  container: the #tiles element; t: the i18n lookup */
  constructor({ container, t }) {
    this.container = container;
    this.t = t;
    this.map = new Map(); // participant id -> {root, video, placeholder, name, flags, quality, pin, info}
    this.pinned = null; // the participant id whose tile this viewer pinned large
    this.screens = new RemoteScreens({ container, label: (p) => t("screen.of", { name: displayName(t, p) }) });
  }

  get(id) {
    return this.map.get(id);
  }

  keys() {
    return this.map.keys();
  }

  values() {
    return this.map.values();
  }

  /** Add or update a participant's tile (``p``: ParticipantInfo). */
  upsert(p) {
    let tile = this.map.get(p.id);
    if (!tile) {
      const root = document.createElement("figure");
      root.className = "tile";
      root.dataset.participantId = p.id;
      const video = document.createElement("video");
      video.autoplay = true;
      video.playsInline = true;
      const placeholder = document.createElement("div");
      placeholder.className = "tile__placeholder";
      placeholder.setAttribute("aria-hidden", "true");
      const caption = document.createElement("figcaption");
      caption.className = "tile__caption";
      const name = document.createElement("span");
      const flags = document.createElement("span");
      flags.className = "flags";
      // Connection quality (quality.js sets its level and label); hidden until measured.
      const quality = document.createElement("span");
      quality.className = "quality";
      quality.setAttribute("role", "img");
      quality.hidden = true;
      quality.append(...[0, 1, 2].map(() => document.createElement("i")));
      caption.append(quality, " ", name, " ", flags);
      // Pin: this tile large, the others in a strip (click again to unpin).
      const pin = document.createElement("button");
      pin.type = "button";
      pin.className = "tile__pin";
      pin.setAttribute("aria-pressed", "false");
      pin.addEventListener("click", () => {
        this.pinned = this.pinned === p.id ? null : p.id;
        this.layout();
      });
      root.append(video, placeholder, caption, pin);
      this.container.append(root);
      tile = { root, video, placeholder, name, flags, quality, pin, info: p };
      this.map.set(p.id, tile);
      this.layout();
    }
    tile.info = p;
    this.renderTile(tile);
  }

  /** The grid, or the stage: the pinned tile, else the first shared screen. */
  layout() {
    if (this.pinned && !this.map.has(this.pinned)) this.pinned = null;
    const el = this.container;
    const screens = this.screens.shown();
    el.dataset.count = String(Math.min(8, this.map.size + screens.length));
    // A shared screen takes the stage, unless this viewer pinned someone themselves.
    const stage = this.pinned ? null : screens[0];
    el.dataset.pinned = String(Boolean(this.pinned || stage));
    for (const id of screens) {
      const root = this.screens.tiles.get(id).root;
      root.dataset.pinned = String(id === stage);
      if (id === stage) el.prepend(root);
    }
    for (const [id, tile] of this.map) {
      const pinned = id === this.pinned;
      tile.root.dataset.pinned = String(pinned);
      tile.pin.setAttribute("aria-pressed", String(pinned));
      tile.pin.textContent = this.t(pinned ? "tile.unpin" : "tile.pin");
      tile.pin.setAttribute("aria-label", this.t(pinned ? "tile.unpin.label" : "tile.pin.label", { name: displayName(this.t, tile.info) }));
      if (pinned) el.prepend(tile.root);
    }
  }

  /** Who is speaking: the audio level each received track carries (getStats). */
  async markSpeakers(call) {
    if (!call?.isJoined()) return;
    const levels = await call.audioLevels();
    for (const [id, tile] of this.map) {
      const speaking = (levels[id] ?? 0) > SPEAKING_LEVEL && tile.info.audio !== false;
      tile.root.dataset.speaking = String(speaking);
    }
  }

  /** Draw a tile from its participant info (name, initials, flags). */
  renderTile(tile) {
    const p = tile.info;
    tile.name.textContent = displayName(this.t, p);
    tile.video.setAttribute("aria-label", this.t("tile.video", { name: displayName(this.t, p) }));
    tile.placeholder.textContent = initials(displayName(this.t, p));
    // Initials until a video track arrives, and whenever the camera is off.
    tile.placeholder.hidden = p.video === false || p.away || p.audio_only ? false : Boolean(tile.hasVideo);
    tile.root.dataset.audio = String(p.audio);
    tile.root.dataset.video = String(p.video);
    tile.root.dataset.away = String(Boolean(p.away));
    tile.root.dataset.audioOnly = String(Boolean(p.audio_only));
    tile.root.dataset.videoBlocked = String(Boolean(p.video_blocked));
    tile.root.dataset.audioBlocked = String(Boolean(p.audio_blocked));
    renderFlags(this.t, tile.flags, p.audio, p.video, Boolean(p.away), p);
  }

  /** A participant's camera and microphone stream arrived. */
  attach(id, stream) {
    const tile = this.map.get(id);
    if (!tile) {
      // A track may arrive before participant_joined is processed: make the tile now.
      this.upsert({ id, role: null, name: null, audio: true, video: true });
      return this.attach(id, stream);
    }
    if (tile.video.srcObject !== stream) tile.video.srcObject = stream;
    tile.hasVideo = stream.getVideoTracks().length > 0;
    this.renderTile(tile);
    tile.video.play?.().catch(() => {});
  }

  /** Show the shared screens of those who say they share (a participant may leave). */
  renderScreens(call) {
    if (!call) return;
    this.screens.update([...call.participants.values()]);
    this.layout();
  }

  /** The participant left: its tile goes. */
  remove(id) {
    const tile = this.map.get(id);
    if (!tile) return;
    tile.video.srcObject = null;
    tile.root.remove();
    this.map.delete(id);
    this.layout();
  }
}
