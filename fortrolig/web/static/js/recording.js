// Recording with consent on the room page (docs/protocol.md, "Recording with consent").
//
// The server decides; this page only shows what the last `recording` message says and sends
// the participant's own choices. A practitioner asks (`rec-btn`, into the journal chosen in the
// notes panel); everyone else is asked in a modal dialog (`rec-consent`); the bar (`rec-bar`)
// says what is happening and offers Stop (practitioner) or Withdraw consent (client). Nothing is
// recorded until the server says `recording`. All text goes in through textContent.

import { clockTime, t } from "./i18n.js";
import "./strings-recording.js";

const $ = (id) => document.getElementById(id);
const RESYNC_MS = 2_000; // after a reconnect, the server repeats a running recording at once

// Error codes of the recording messages -> the message shown (data-key of #rec-msg).
const ERROR_KEYS = {
  practitioner_only: "practitioner_only",
  recording_busy: "busy",
  recording_not_allowed: "not_allowed",
  recording_unavailable: "unavailable",
  no_recording: "no_recording",
  not_asked: "not_asked",
};
const RECORDING_REFS = new Set(["record_request", "record_consent", "record_stop"]);
// Stop reasons whose text depends on whether anything had been recorded.
const RECORDED_VARIANT = new Set(["refused", "withdrawn", "stopped"]);

export class RecordingUi {
  /**
   * @param {object} env what the room page knows, read when needed:
   *   call() the Call or null, panel() the NotesPanel or null, role() "practitioner" | "client",
   *   roomState() the page's state, signedIn() bool, displayName(participant) a name,
   *   onConsent(accept) (optional) this page is about to answer a request
   */
  constructor(env) {
    this.env = env;
    this.current = null; // {id, state, requestedBy, accepted, waitingFor, askedAt}
    this.last = null; // the last `stopped` message
    this.message = null; // {key, text, vars}
    this.pending = false; // a request sent, no answer yet
    this.answering = false; // a consent sent, no answer yet
    this.names = new Map(); // participant id -> name (someone who left still has one)
    this.resync = null;
    this.returnFocus = null;
    this.bind();
    this.render();
  }

  bind() {
    $("rec-btn").addEventListener("click", () => this.request());
    $("rec-stop").addEventListener("click", () => this.stop());
    $("rec-accept").addEventListener("click", () => this.answer(true));
    $("rec-refuse").addEventListener("click", () => this.answer(false));
    $("rec-dismiss").addEventListener("click", () => {
      this.say(null);
      this.render();
      const btn = $("rec-btn");
      (btn.hidden || btn.disabled ? $("main") : btn).focus(); // not lost on the hidden button
    });
    // Escape must not answer for anyone: the question stays until it is answered.
    $("rec-consent").addEventListener("cancel", (e) => e.preventDefault());
    document.addEventListener("notes:client", () => this.render());
    const top = () => this.placePanels();
    addEventListener("resize", top);
    if (typeof ResizeObserver === "function") new ResizeObserver(top).observe($("rec-bar"));
  }

  // -- what the server says ---------------------------------------------------------------

  /** A `recording` message: the whole current state of the room's recording. */
  onRecording(msg) {
    clearTimeout(this.resync);
    this.pending = false;
    this.answering = false;
    this.learnNames();
    const before = this.current?.id === msg.recording_id ? this.current : null;
    if (msg.state === "stopped") {
      this.current = null;
      this.last = msg;
      this.sayStopped(msg, before);
      this.env.panel()?.refreshRecordings?.();
    } else {
      if (!before) this.say(null); // a new request: the old outcome is history
      this.current = {
        id: msg.recording_id,
        state: msg.state,
        requestedBy: msg.requested_by,
        accepted: [...(msg.accepted || [])],
        waitingFor: [...(msg.waiting_for || [])],
        askedAt: before?.askedAt ?? new Date(),
      };
      if (msg.state === "recording" && before?.state !== "recording") this.env.panel()?.refreshRecordings?.();
    }
    this.render();
  }

  /** An `error`; true when it was about recording (then it is shown here). */
  onError(msg) {
    if (!RECORDING_REFS.has(msg.ref)) return false;
    this.pending = false;
    this.answering = false;
    const key = ERROR_KEYS[msg.code] || "error";
    this.say(key, key === "error" ? { code: msg.code || "other" } : {});
    if (msg.code === "no_recording" || msg.code === "not_asked") this.current = null; // stale
    this.render();
    return true;
  }

  /** `joined` (again, after a reconnect): a recording still running is repeated at once. */
  onJoined() {
    if (!this.current) return;
    clearTimeout(this.resync);
    this.resync = setTimeout(() => {
      this.current = null;
      this.render();
    }, RESYNC_MS);
  }

  /** The page left the consultation. */
  onEnded() {
    clearTimeout(this.resync);
    this.current = null;
    this.say(null);
    this.render();
  }

  // -- what this participant does -------------------------------------------------------------

  request() {
    const call = this.env.call();
    const client = this.env.panel()?.chosenClient ?? null;
    if (!call || !client || this.current) return;
    const label = client.contact ? `${client.name} (${client.contact})` : client.name;
    if (!confirm(t("rec.confirm", { client: label }))) return;
    this.say(null);
    if (call.recordRequest(client.id)) this.pending = true;
    else this.say("not_sent");
    this.render();
  }

  stop() {
    const call = this.env.call();
    if (!call || !this.current) return;
    this.env.onConsent?.(false); // stopping or withdrawing: this page encrypts again at once
    if (!call.recordStop(this.current.id)) this.say("not_sent");
    else $("rec-stop").disabled = true; // until the server's `stopped`
    this.render();
  }

  answer(accept) {
    const call = this.env.call();
    if (!call || !this.current || this.answering) return;
    // An acceptance makes this page's media clear for the recorder first (e2ee-ui.js).
    this.env.onConsent?.(accept);
    if (call.recordConsent(this.current.id, accept)) {
      this.answering = true;
      $("rec-consent-msg").hidden = true;
    } else {
      const msg = $("rec-consent-msg");
      msg.textContent = t("rec.msg.not_sent");
      msg.hidden = false;
    }
    this.render();
  }

  // -- messages -------------------------------------------------------------------------------

  say(key, vars = {}, text = null) {
    this.message = key ? { key, vars, text: text || `rec.msg.${key}` } : null;
  }

  sayStopped(msg, before) {
    const reason = msg.reason || "stopped";
    const recorded = before?.state === "recording";
    let text = `rec.msg.${reason}`;
    if (RECORDED_VARIANT.has(reason) && recorded) text += ".recorded";
    if (reason === "failed" && !recorded) text += ".asking";
    this.say(reason, { name: this.nameOf(msg.by) }, text);
  }

  // -- names ----------------------------------------------------------------------------------

  learnNames() {
    for (const p of this.env.call()?.participants.values() ?? []) this.names.set(p.id, this.env.displayName(p));
  }

  nameOf(id) {
    const call = this.env.call();
    if (id && id === call?.selfId) return t("rec.you");
    const p = call?.participants.get(id);
    if (p) return this.env.displayName(p);
    return this.names.get(id) || t("rec.someone");
  }

  // -- rendering -------------------------------------------------------------------------------

  asked() {
    const self = this.env.call()?.selfId;
    return Boolean(this.current && self && this.current.waitingFor.includes(self));
  }

  render() {
    this.learnNames();
    this.renderButton();
    this.renderBar();
    this.renderDialog();
    this.placePanels();
  }

  renderButton() {
    const btn = $("rec-btn");
    const hint = $("rec-hint");
    const practitioner = this.env.role() === "practitioner";
    btn.hidden = !practitioner;
    btn.textContent = t("rec.button");
    btn.setAttribute("aria-label", t("rec.button.label"));
    let why = null;
    const joined = Boolean(this.env.call()?.isJoined());
    if (!joined) why = "notjoined";
    else if (!this.env.signedIn() || !this.env.panel()) why = "signedout";
    else if (!this.env.panel().chosenClient) why = "noclient";
    const busy = Boolean(this.current) || this.pending;
    btn.disabled = !practitioner || Boolean(why) || busy;
    btn.dataset.reason = why || (busy ? "busy" : "");
    // Before joining the room is not shown at all; while busy the bar explains.
    const show = practitioner && why && why !== "notjoined";
    hint.hidden = !show;
    hint.textContent = show ? t(`rec.hint.${why}`) : "";
    hint.dataset.key = show ? why : "";
  }

  renderBar() {
    const cur = this.current;
    const inRoom = !["prejoin", "ended"].includes(this.env.roomState());
    const bar = $("rec-bar");
    bar.dataset.open = String(inRoom && Boolean(cur || this.message));
    bar.dataset.state = cur?.state || "none";
    const indicator = $("rec-indicator");
    indicator.dataset.state = cur?.state || "none";
    $("rec-state-text").textContent = cur ? t(`rec.state.${cur.state}`) : "";
    $("rec-detail").textContent = cur ? this.detail(cur) : "";
    const stop = $("rec-stop");
    const stopHadFocus = document.activeElement === stop;
    const self = this.env.call()?.selfId;
    const practitioner = this.env.role() === "practitioner";
    stop.hidden = !cur || !(practitioner || cur.accepted.includes(self));
    if (!cur) stop.disabled = false;
    if (cur) {
      stop.textContent = t(practitioner
        ? (cur.state === "asking" ? "rec.stop.practitioner.asking" : "rec.stop.practitioner")
        : "rec.stop.client");
    }
    const msg = $("rec-msg");
    const m = this.message;
    msg.textContent = m ? t(m.text, m.vars) : "";
    msg.dataset.key = m?.key || "";
    $("rec-dismiss").hidden = !m;
    if (stopHadFocus && stop.hidden) (m ? $("rec-dismiss") : $("main")).focus();
  }

  detail(cur) {
    const names = cur.waitingFor.map((id) => this.nameOf(id)).join(", ");
    if (cur.state === "asking") return names ? t("rec.state.asking.waiting", { names }) : "";
    return names ? t("rec.state.recording.waiting", { names }) : t("rec.state.recording.all");
  }

  renderDialog() {
    const dialog = $("rec-consent");
    const asked = this.asked() && !["prejoin", "ended"].includes(this.env.roomState());
    if (!asked) {
      if (dialog.open) {
        dialog.close();
        const back = this.returnFocus;
        this.returnFocus = null;
        if (back?.isConnected && !back.disabled && !back.hidden) back.focus();
      }
      $("rec-consent-msg").hidden = true;
      return;
    }
    const cur = this.current;
    dialog.dataset.recordingId = cur.id;
    dialog.dataset.state = cur.state;
    $("rec-consent-body").textContent = t("rec.consent.body", { name: this.nameOf(cur.requestedBy) });
    const when = $("rec-consent-when");
    when.dataset.key = cur.state;
    when.textContent = t(`rec.consent.when.${cur.state}`, { time: clockTime(cur.askedAt) });
    $("rec-accept").disabled = this.answering;
    $("rec-refuse").disabled = this.answering;
    if (!dialog.open) {
      this.returnFocus = document.activeElement;
      dialog.showModal();
      $("rec-refuse").focus(); // the choice that records nothing; Enter never says yes
    }
  }

  /** On a phone the chat opens over the page: below the top bar and the recording bar. */
  placePanels() {
    const bottom = Math.max(
      document.querySelector(".topbar")?.getBoundingClientRect().bottom ?? 48,
      $("rec-bar").dataset.open === "true" ? $("rec-bar").getBoundingClientRect().bottom : 0,
    );
    document.documentElement.style.setProperty("--panel-top", `${Math.round(bottom)}px`);
  }

  /** What the tests and a support person may read: the state as the server last said it. */
  snapshot() {
    const cur = this.current;
    return {
      state: cur ? cur.state : this.last ? "stopped" : "none",
      recordingId: cur?.id ?? this.last?.recording_id ?? null,
      requestedBy: cur?.requestedBy ?? this.last?.requested_by ?? null,
      accepted: [...(cur?.accepted ?? this.last?.accepted ?? [])],
      waitingFor: [...(cur?.waitingFor ?? [])],
      reason: cur ? null : this.last?.reason ?? null,
      by: cur ? null : this.last?.by ?? null,
      asked: this.asked(),
      dialogOpen: $("rec-consent").open,
      message: this.message?.key ?? null,
    };
  }
}
