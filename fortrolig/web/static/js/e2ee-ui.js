// End-to-end encrypted media on the room page: the badge that says whether the call is
// end-to-end encrypted, the notice about a browser that cannot do it, and when frames go clear.
//
// Frames go without end-to-end encryption only in two cases, both visible on every page:
// - a recording is asked for or runs: the frames of those who accepted it go clear (this
//   page's own from the moment it sends its consent, so that the keyframe the recorder asks
//   for when it starts is already clear), and the others' stay encrypted;
// - the practitioner let in a browser that cannot encrypt: an encrypted control line from a
//   practitioner (chat-crypto.js; the server cannot forge one) turns it off for everyone.

import { t } from "./i18n.js";
import "./strings-e2ee.js";

const $ = (id) => document.getElementById(id);
// A participant whose page has not announced keys by then cannot encrypt (a program, an old
// page): it is treated as a browser without end-to-end encryption.
const ANNOUNCE_WITHIN_MS = 5_000;

export class E2eeUi {
  /**
   * @param {object} env
   *   media: MediaE2ee; call(): the Call; chat(): the ChatCrypto
   *   displayName(participant): a name to show; systemLine(key): a line in the chat log
   *   sendLine(text): send a chat line (with its message id)
   */
  constructor(env) {
    this.env = env;
    this.allowedClear = false; // the practitioner's decision, for the rest of this room
    this.unsupported = new Set(); // participants whose browser said it cannot encrypt media
    this.recording = { on: false, accepted: [] };
    this.consented = false; // this page accepted the current recording request
    $("e2ee-continue").addEventListener("click", () => this.continueWithout());
    $("e2ee-remove").addEventListener("click", () => {
      const id = $("e2ee-remove").dataset.participantId;
      if (id) this.env.call()?.moderate("remove", id);
    });
  }

  get media() {
    return this.env.media;
  }

  /** What the page shows: on, recording, off (no end-to-end encryption), or none yet. */
  mode() {
    if (!this.media.supported || this.allowedClear) return "off";
    if (this.recording.on) return "recording";
    return "on";
  }

  onPeerReady({ peerId, media }) {
    if (media) this.unsupported.delete(peerId);
    else this.unsupported.add(peerId);
    this.render();
  }

  /** A participant is in the room: it must announce its keys within a few seconds. */
  expect(peerId) {
    if (peerId === this.env.call()?.selfId) return;
    setTimeout(() => {
      const present = this.env.call()?.participants.has(peerId);
      if (present && this.env.chat()?.peerMedia(peerId) === null) {
        this.unsupported.add(peerId);
        this.render();
      }
    }, ANNOUNCE_WITHIN_MS);
  }

  onPeerGone(peerId) {
    this.unsupported.delete(peerId);
    this.render();
  }

  /** A control line; only a practitioner's counts (the role is the server's roster). */
  onControl({ fromId, data }) {
    const from = this.env.call()?.participants.get(fromId);
    if (data.e2ee !== "off" || from?.role !== "practitioner" || this.allowedClear) return;
    this.allowedClear = true;
    this.env.systemLine("e2ee.off.line");
    this.apply();
  }

  /** Each `recording` message: while one is asked for or runs, those who accepted it send
   * clear frames. */
  onRecording(msg) {
    const on = msg.state === "asking" || msg.state === "recording";
    const accepted = on && Array.isArray(msg.accepted) ? msg.accepted.filter((x) => typeof x === "string") : [];
    this.recording = { on: on && accepted.length > 0, accepted };
    if (!on || !accepted.includes(this.env.call()?.selfId)) this.consented = false;
    this.apply();
  }

  /** This page answers a recording request (recording.js), before the answer is sent. */
  onConsent(accept) {
    this.consented = Boolean(accept);
    return this.apply();
  }

  async continueWithout() {
    const chat = this.env.chat();
    const call = this.env.call();
    if (!chat || !call?.isJoined()) return;
    this.env.sendLine(await chat.encryptControl({ e2ee: "off" }));
    this.allowedClear = true;
    this.env.systemLine("e2ee.off.line");
    this.apply();
  }

  apply() {
    const self = this.env.call()?.selfId;
    const recorded = this.recording.on ? this.recording.accepted : [];
    const done = this.media.setClear({
      send: this.allowedClear || this.consented || recorded.includes(self),
      all: this.allowedClear,
      from: recorded,
    });
    this.render();
    return done;
  }

  render() {
    const mode = this.mode();
    const badge = $("e2ee-badge");
    const live = Boolean(this.env.call()?.isJoined());
    badge.hidden = !live;
    badge.dataset.state = mode;
    badge.textContent = t(`e2ee.badge.${mode}`);
    badge.title = t(`e2ee.badge.${mode}.title`);
    $("e2ee-unsupported").hidden = this.media.supported;
    this.renderNotice(live);
  }

  /** Who cannot encrypt, and (practitioners) the decision. */
  renderNotice(live) {
    const notice = $("e2ee-notice");
    const call = this.env.call();
    const waiting = [...this.unsupported].filter((id) => call?.participants.has(id));
    notice.hidden = !live || !waiting.length || this.allowedClear || !this.media.supported;
    if (notice.hidden) return;
    const id = waiting[0];
    const name = this.env.displayName(call.participants.get(id));
    const practitioner = call.role === "practitioner";
    $("e2ee-notice-text").textContent = t(practitioner ? "e2ee.unsupported.peer" : "e2ee.unsupported.other", { name });
    $("e2ee-actions").hidden = !practitioner;
    const remove = $("e2ee-remove");
    remove.textContent = t("e2ee.remove", { name });
    remove.dataset.participantId = id;
  }

  /** What the tests and a support person may read (no keys). */
  async snapshot() {
    return {
      api: this.media.api,
      mode: this.mode(),
      unsupported: [...this.unsupported],
      clear: { ...this.media.clear },
      frames: await this.media.stats(),
    };
  }
}
