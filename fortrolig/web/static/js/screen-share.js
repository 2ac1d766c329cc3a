// Screen sharing on the room page (docs/protocol.md, "Media tracks").
//
// A share is a second video track of the participant: the page's publish offer keeps an m-line
// for it from the start (call.js), so starting or stopping is a replaceTrack, never a new offer,
// and it is end-to-end encrypted like the camera. `media_state.screen` tells the others, who
// lay the screen out large (it takes the stage unless someone pinned a tile themselves).
//
// - LocalScreen: this page's share: getDisplayMedia (contentHint "detail": sharp text before
//   smooth motion), stopped by our button, by the browser's own "Stop sharing" control (the
//   track ends) or by the practitioner restricting sharing to practitioners.
// - RemoteScreens: the others' screen tiles, shown while their owner says it shares and its
//   track has arrived.

import { addStrings } from "./i18n.js";

addStrings({
  en: {
    "screen.start": "Share screen",
    "screen.stop": "Stop sharing",
    "screen.of": "{name}'s screen",
    "screen.policy": "Clients may share their screen",
    "screen.restricted": "The practitioner allows only practitioners to share their screen.",
    "screen.failed": "Your screen could not be shared. Check that the browser may record the screen.",
  },
  da: {
    "screen.start": "Del skærm",
    "screen.stop": "Stop deling",
    "screen.of": "{name}s skærm",
    "screen.policy": "Klienter må dele deres skærm",
    "screen.restricted": "Behandleren tillader kun behandlere at dele skærm.",
    "screen.failed": "Din skærm kunne ikke deles. Tjek, at browseren må optage skærmen.",
  },
});

const SCREEN_FPS = 15; // what LiveKit uses for screens; text needs sharpness, not frames

export class LocalScreen {
  /**
   * @param {object} opts
   *   call(): the Call (or null); onChange(): re-render; onError(key): a message to show
   */
  constructor(opts) {
    this.opts = opts;
    this.track = null;
  }

  get sharing() {
    return this.track !== null;
  }

  async toggle() {
    if (this.track) return this.stop();
    const call = this.opts.call();
    if (!call?.mayShareScreen) return;
    let stream;
    try {
      stream = await navigator.mediaDevices.getDisplayMedia({ video: { frameRate: SCREEN_FPS }, audio: false });
    } catch (err) {
      // The user cancelled the browser's picker (NotAllowedError) or the system refused.
      if (err?.name !== "NotAllowedError" && err?.name !== "AbortError") this.opts.onError("screen.failed");
      return;
    }
    const track = stream.getVideoTracks()[0];
    if (!track) return;
    if ("contentHint" in track) track.contentHint = "detail";
    track.addEventListener("ended", () => {
      if (this.track === track) this.stop(); // the browser's own "Stop sharing"
    });
    this.track = track;
    await call.shareScreen(track);
    this.opts.onChange();
  }

  async stop() {
    const track = this.track;
    this.track = null;
    track?.stop();
    await this.opts.call()?.shareScreen(null);
    this.opts.onChange();
  }
}

export class RemoteScreens {
  /**
   * @param {object} opts
   *   container: the tiles element; label(participant): "Anna's screen"
   */
  constructor(opts) {
    this.opts = opts;
    this.streams = new Map(); // participant id -> MediaStream of its screen
    this.tiles = new Map(); // participant id -> {root, video, caption}
  }

  /** The screen's track arrived (it stays on its m-line while the owner is in the room). */
  setStream(participantId, stream) {
    this.streams.set(participantId, stream);
  }

  forget(participantId) {
    this.streams.delete(participantId);
  }

  /** Show the screens of those who say they share and whose track is here; drop the rest. */
  update(participants) {
    const showing = new Set();
    for (const p of participants) {
      const stream = this.streams.get(p.id);
      if (!p.screen || p.away || !stream) continue;
      showing.add(p.id);
      let tile = this.tiles.get(p.id);
      if (!tile) {
        tile = this.makeTile(p.id);
        this.tiles.set(p.id, tile);
        this.opts.container.append(tile.root);
      }
      tile.caption.textContent = this.opts.label(p);
      tile.video.setAttribute("aria-label", this.opts.label(p));
      if (tile.video.srcObject !== stream) tile.video.srcObject = stream;
      tile.video.play?.().catch(() => {});
    }
    for (const [id, tile] of this.tiles) {
      if (showing.has(id)) continue;
      tile.video.srcObject = null;
      tile.root.remove();
      this.tiles.delete(id);
    }
  }

  makeTile(participantId) {
    const root = document.createElement("figure");
    root.className = "tile tile--screen";
    root.dataset.screenOf = participantId;
    const video = document.createElement("video");
    video.autoplay = true;
    video.playsInline = true;
    video.muted = true; // a screen carries no sound here
    const caption = document.createElement("figcaption");
    caption.className = "tile__caption";
    root.append(video, caption);
    return { root, video, caption };
  }

  /** The participant ids whose screens are shown, in the order they came. */
  shown() {
    return [...this.tiles.keys()];
  }
}
