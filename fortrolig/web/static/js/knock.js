// Telling the practitioner that a client arrived in the waiting room or dropped out of the call,
// also while the tab is in the background: a short chime (Web Audio, unlocked by the Join click),
// the tab title ("(1) Anna is waiting"), and a system notification where the practitioner
// allowed them (asked once, on Join, never on page load). Nothing here names a client in a
// notification's body beyond the name the waiting list already shows.

import { newAudioContext, playNotes } from "./tones.js";

const CHIMES = {
  arrived: [660, 880], // rising: someone is at the door
  dropped: [523, 392], // falling: someone's connection went
};

export class Knock {
  constructor() {
    this.seen = new Set(); // waiting client ids already announced
    this.audio = null;
    this.count = 0; // chimes played (for tests and support)
    this.notified = 0; // notifications shown
  }

  /** On a user gesture (Join): unlock audio and ask once for notifications. */
  prime() {
    try {
      this.audio ||= newAudioContext();
      this.audio?.resume?.().catch(() => {});
    } catch {
      this.audio = null;
    }
    if (typeof Notification === "function" && Notification.permission === "default") {
      Notification.requestPermission().catch(() => {});
    }
  }

  /** The waiting list changed: announce each client not announced before. */
  waiting(clients, nameOf, text) {
    const now = new Set(clients.map((c) => c.id));
    const fresh = clients.filter((c) => !this.seen.has(c.id));
    this.seen = now;
    if (!fresh.length) return;
    this.chime("arrived");
    this.notify(text(fresh.map(nameOf).join(", ")));
  }

  /** Someone's connection dropped (their place is held). */
  dropped(text) {
    this.chime("dropped");
    this.notify(text);
  }

  chime(kind) {
    this.count += 1;
    const ctx = this.audio;
    if (!ctx || ctx.state === "closed") return;
    playNotes(ctx, CHIMES[kind], { step: 0.18, attack: 0.02, length: 0.16, peak: 0.2 });
  }

  notify(text) {
    // Only when the practitioner is not looking at this tab: otherwise the page says it.
    if (typeof Notification !== "function" || Notification.permission !== "granted") return;
    if (document.visibilityState === "visible" && document.hasFocus()) return;
    try {
      const n = new Notification("Fortrolig", { body: text, tag: "fortrolig-room", silent: true });
      n.onclick = () => {
        window.focus();
        n.close();
      };
      this.notified += 1;
    } catch {
      // some browsers allow notifications only from a service worker: the title still says it
    }
  }

  /** The tab title: how many wait, first name, or the page's own title. */
  title(base, clients, nameOf, text) {
    document.title = clients.length ? `(${clients.length}) ${text(nameOf(clients[0]))} – ${base}` : base;
  }
}
