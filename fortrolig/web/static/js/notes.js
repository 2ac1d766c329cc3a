// The practitioner's notes panel (docs/journal.md, API under /api/journal): pick or create the
// client's journal, read it, write a note (linked to the consultation when known), add an
// addendum to any entry, export JSON or PDF, play the client's recordings. Used in the room page
// (during and after the consultation) and on /practice. Every text goes in through textContent,
// never as HTML. Choosing a client fires `notes:client` (the room's Record button follows it).

import { language, t } from "./i18n.js";
import { api, download } from "./session.js";
import "./strings-practice.js";
import "./strings-recording.js";

/** The consultation of a room (GET /api/v1/consultations?room_id=…), or null. */
export async function consultationOfRoom(roomId) {
  const res = await api(`/api/v1/consultations?room_id=${encodeURIComponent(roomId)}`);
  return res.ok ? res.data.consultations?.[0] ?? null : null;
}

function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "i18n") el.dataset.i18n = v;
    else if (k === "text") el.textContent = v;
    else if (k in el && typeof v !== "string") el[k] = v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  el.append(...children.filter((c) => c !== null && c !== undefined));
  if (attrs.i18n) el.textContent = t(attrs.i18n);
  return el;
}

function when(iso) {
  const d = new Date(iso);
  return Number.isNaN(d.getTime())
    ? iso
    : d.toLocaleString(language(), { dateStyle: "medium", timeStyle: "short" });
}

/** Seconds as m:ss or h:mm:ss (the same in every language). */
function clockDuration(seconds) {
  const total = Math.max(0, Math.round(Number(seconds) || 0));
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const ss = String(total % 60).padStart(2, "0");
  return h ? `${h}:${String(m).padStart(2, "0")}:${ss}` : `${m}:${ss}`;
}

function errorText(res) {
  const code = res.error?.code || "other";
  return t("notes.err.other", { code });
}

export class NotesPanel {
  /**
   * @param {HTMLElement} root where the panel is built
   * @param {{consultationId?: string|null, contextKey?: string, suggestedName?: string|null,
   *          suggestedContact?: string|null, clientId?: string|null}} ctx
   */
  constructor(root, ctx = {}) {
    this.root = root;
    this.ctx = ctx;
    this.clients = [];
    this.clientId = null;
    this.notes = [];
    this.recordings = [];
    this.build();
  }

  get storageKey() {
    return `fortrolig.notes.client.${this.ctx.consultationId || this.ctx.contextKey || "practice"}`;
  }

  build() {
    this.select = h("select", { id: "notes-client" });
    this.newName = h("input", { id: "notes-new-name", type: "text", maxlength: "200", autocomplete: "off" });
    this.createBtn = h("button", { id: "notes-create-client", type: "button", class: "btn", i18n: "notes.client.create" });
    this.linked = h("p", { id: "notes-linked", class: "muted small" });
    this.list = h("ol", { id: "notes-list", class: "notes__list", "aria-live": "polite" });
    this.empty = h("p", { id: "notes-empty", class: "muted", i18n: "notes.empty", hidden: true });
    this.text = h("textarea", { id: "notes-text", rows: "4", maxlength: "100000" });
    this.saveBtn = h("button", { id: "notes-save", type: "submit", class: "btn btn--primary", i18n: "notes.save" });
    this.form = h("form", { id: "notes-form", class: "stack" },
      h("label", { for: "notes-text", i18n: "notes.write" }), this.text, this.saveBtn);
    this.jsonBtn = h("button", { id: "notes-export-json", type: "button", class: "btn", i18n: "notes.export.json" });
    this.pdfBtn = h("button", { id: "notes-export-pdf", type: "button", class: "btn", i18n: "notes.export.pdf" });
    this.msg = h("p", { id: "notes-msg", class: "small", role: "status", "aria-live": "polite" });
    this.journal = h("div", { class: "notes__journal stack", hidden: true },
      this.list, this.empty, this.form, h("p", { class: "row" }, this.jsonBtn, this.pdfBtn),
      this.buildRecordings());
    this.root.replaceChildren(
      this.linked,
      h("div", { class: "stack" },
        h("label", { for: "notes-client", i18n: "notes.client" }), this.select,
        (this.newClient = h("div", { class: "stack" },
          h("label", { for: "notes-new-name", i18n: "notes.client.newName" }),
          h("div", { class: "row" }, this.newName, this.createBtn)))),
      this.journal,
      this.msg,
    );
    this.select.addEventListener("change", () => this.choose(this.select.value || null));
    this.createBtn.addEventListener("click", () => this.createClient().catch((e) => this.fail(e)));
    this.newName.addEventListener("keydown", (e) => {
      if (e.key === "Enter") {
        e.preventDefault();
        this.createBtn.click();
      }
    });
    this.form.addEventListener("submit", (e) => {
      e.preventDefault();
      this.saveNote().catch((err) => this.fail(err));
    });
    this.jsonBtn.addEventListener("click", () => this.exportAs("json").catch((e) => this.fail(e)));
    this.pdfBtn.addEventListener("click", () => this.exportAs("pdf").catch((e) => this.fail(e)));
    this.list.addEventListener("click", (e) => this.onListClick(e));
    this.recList.addEventListener("click", (e) => this.onRecordingClick(e));
    this.recRefresh.addEventListener("click", () => this.refreshRecordings());
    this.renderContext();
  }

  buildRecordings() {
    this.recList = h("ul", { id: "notes-recordings", class: "recordings" });
    this.recEmpty = h("p", { id: "notes-recordings-empty", class: "muted", i18n: "recordings.empty", hidden: true });
    this.recMsg = h("p", { id: "notes-recordings-msg", class: "small", role: "status", "aria-live": "polite" });
    this.recRefresh = h("button", {
      id: "notes-recordings-refresh", type: "button", class: "btn btn--small", i18n: "recordings.refresh",
      "aria-label": t("recordings.refresh.label"), "data-i18n-label": "recordings.refresh.label",
    });
    return h("section", { id: "notes-recordings-section", class: "recordings__section", "aria-labelledby": "notes-recordings-heading" },
      h("div", { class: "row recordings__head" },
        h("h3", { id: "notes-recordings-heading", i18n: "recordings.heading" }), this.recRefresh),
      this.recMsg, this.recEmpty, this.recList);
  }

  /** The journal chosen now ({id, name, contact}), or null. */
  get chosenClient() {
    const c = this.clients.find((x) => x.id === this.clientId);
    return c ? { id: c.id, name: c.name, contact: c.contact ?? null } : null;
  }

  /** A new context (e.g. another consultation chosen on /practice). */
  setContext(ctx) {
    this.ctx = ctx;
    this.renderContext();
    return this.load();
  }

  renderContext() {
    const id = this.ctx.consultationId;
    this.linked.hidden = !id;
    this.linked.textContent = id ? t("notes.linked", { id }) : "";
    if (!this.newName.value) this.newName.value = this.ctx.suggestedName || "";
  }

  say(key, vars = {}) {
    this.msg.textContent = key ? t(key, vars) : "";
    this.msg.dataset.key = key || "";
  }

  fail(err) {
    console.warn("notes:", err);
    this.say("notes.err.other", { code: "other" });
  }

  /** Load the client list and the chosen journal. */
  async load() {
    this.say("notes.loading");
    const res = await api("/api/journal/clients");
    if (!res.ok) {
      this.msg.textContent = errorText(res);
      return;
    }
    this.say(null);
    this.clients = res.data.clients || [];
    let chosen = this.ctx.clientId || null;
    try {
      chosen ||= sessionStorage.getItem(this.storageKey);
    } catch {
      // no storage
    }
    if (!this.clients.some((c) => c.id === chosen)) chosen = null;
    this.renderClients(chosen);
    await this.choose(chosen);
  }

  renderClients(chosen) {
    const none = new Option(t("notes.client.choose"), "", false, !chosen);
    none.dataset.i18n = "notes.client.choose";
    this.select.replaceChildren(none);
    for (const c of this.clients) {
      const label = c.contact ? `${c.name} (${c.contact})` : c.name;
      this.select.append(new Option(label, c.id, false, c.id === chosen));
    }
  }

  async choose(clientId) {
    this.clientId = clientId;
    try {
      if (clientId) sessionStorage.setItem(this.storageKey, clientId);
    } catch {
      // no storage
    }
    this.journal.hidden = !clientId;
    this.newClient.hidden = Boolean(clientId); // "New client…" is the list's first choice
    this.notes = [];
    this.list.replaceChildren();
    this.recordings = [];
    this.recList.replaceChildren();
    this.root.dispatchEvent(new CustomEvent("notes:client", { bubbles: true, detail: { client: this.chosenClient } }));
    if (!clientId) return;
    const [res] = await Promise.all([
      api(`/api/journal/clients/${encodeURIComponent(clientId)}?purpose=care`),
      this.refreshRecordings(),
    ]);
    if (this.clientId !== clientId) return; // another client was chosen meanwhile
    if (!res.ok) {
      this.msg.textContent = errorText(res);
      return;
    }
    this.notes = res.data.notes || [];
    this.renderNotes();
  }

  // -- recordings (fortrolig/journal/recording_http.py) --------------------------------------

  /** Load the chosen client's recordings again (the room calls it when one starts or stops). */
  async refreshRecordings() {
    const clientId = this.clientId;
    if (!clientId) return;
    this.sayRecordings("recordings.loading");
    this.recRefresh.disabled = true;
    const res = await api(`/api/journal/clients/${encodeURIComponent(clientId)}/recordings`);
    this.recRefresh.disabled = false;
    if (this.clientId !== clientId) return;
    if (!res.ok) {
      this.sayRecordings("recordings.err", { code: res.error?.code || "other" });
      return;
    }
    this.sayRecordings(null);
    this.recordings = res.data.recordings || [];
    this.renderRecordings();
  }

  sayRecordings(key, vars = {}) {
    this.recMsg.textContent = key ? t(key, vars) : "";
    this.recMsg.dataset.key = key || "";
  }

  renderRecordings() {
    // A player that is open stays open (and keeps playing) across a refresh.
    const players = new Map([...this.recList.querySelectorAll("video.recordings__player")]
      .map((v) => [`${v.closest("li[data-recording-id]").dataset.recordingId}/${v.dataset.part}`, v]));
    this.recList.replaceChildren();
    this.recEmpty.hidden = this.recordings.length > 0;
    const newest = [...this.recordings].sort((a, b) => String(b.started_at).localeCompare(String(a.started_at)));
    for (const r of newest) {
      const state = ["recording", "finished", "incomplete"].includes(r.state) ? r.state : "incomplete";
      const meta = h("p", { class: "recordings__meta" },
        h("time", { datetime: r.started_at, text: when(r.started_at) }), " · ",
        h("span", { class: "recordings__duration", text: clockDuration(r.duration_s) }), " · ",
        h("span", { class: "recordings__state", "data-state": state, text: t(`recordings.state.${state}`) }));
      const parts = r.parts || [];
      const list = h("ul", { class: "recordings__parts" });
      for (const p of parts) list.append(this.partItem(r, p, parts.length, players));
      const li = h("li", { class: "recordings__item", "data-state": state }, meta,
        parts.length ? list : h("p", { class: "muted small", i18n: "recordings.nopart" }));
      li.dataset.recordingId = r.id;
      this.recList.append(li);
    }
  }

  partItem(r, p, count, players) {
    const n = p.index;
    const label = count > 1
      ? t("recordings.part.at", { n: n + 1, at: clockDuration(p.starts_at_s), d: clockDuration(p.duration_s) })
      : null;
    const btn = h("button", {
      type: "button", class: "btn btn--small", "data-action": "play", "data-part": String(n),
      text: t(count > 1 ? "recordings.play.part" : "recordings.play", { n: n + 1 }),
      "aria-label": t("recordings.play.label", { n: n + 1, when: when(r.started_at) }),
    });
    const item = h("li", { class: "recordings__part", "data-part": String(n) },
      label ? h("span", { class: "recordings__label small", text: label }) : null, btn);
    const player = players.get(`${r.id}/${n}`);
    if (player) item.append(player);
    return item;
  }

  onRecordingClick(event) {
    const btn = event.target.closest("button[data-action=play]");
    if (!btn) return;
    const li = btn.closest("li[data-recording-id]");
    this.play(li.dataset.recordingId, Number(btn.dataset.part), btn).catch((err) => {
      console.warn("recordings:", err);
      btn.disabled = false;
      this.sayRecordings("recordings.err", { code: "other" });
    });
  }

  /** A playback ticket for one part, then a <video> that streams it (the URL is the credential). */
  async play(recordingId, part, btn) {
    const r = this.recordings.find((x) => x.id === recordingId);
    const clientId = this.clientId;
    btn.disabled = true;
    this.sayRecordings("recordings.opening");
    const path = `/api/journal/clients/${encodeURIComponent(clientId)}/recordings/`
      + `${encodeURIComponent(recordingId)}/parts/${part}/playback`;
    const res = await api(path, { method: "POST" });
    btn.disabled = false;
    if (!res.ok) {
      this.sayRecordings("recordings.err", { code: res.error?.code || "other" });
      return;
    }
    this.sayRecordings(null);
    const item = btn.closest("li.recordings__part");
    let video = item.querySelector("video.recordings__player");
    if (!video) {
      video = h("video", { class: "recordings__player", controls: true, preload: "metadata", playsinline: true });
      video.dataset.part = String(part);
      item.append(video);
    }
    video.setAttribute("aria-label", t("recordings.player.label", { n: part + 1, when: when(r?.started_at) }));
    video.src = res.data.url;
    video.focus();
    video.play?.().catch(() => {}); // may need a second click where autoplay with sound is blocked
  }

  async createClient() {
    const name = this.newName.value.trim();
    if (!name) {
      this.say("notes.err.empty");
      this.newName.focus();
      return;
    }
    const body = { name };
    if (this.ctx.suggestedContact && name === (this.ctx.suggestedName || "")) body.contact = this.ctx.suggestedContact;
    this.createBtn.disabled = true;
    const res = await api("/api/journal/clients", { method: "POST", body });
    this.createBtn.disabled = false;
    if (!res.ok) {
      this.msg.textContent = errorText(res);
      return;
    }
    this.clients.push(res.data);
    this.newName.value = "";
    this.renderClients(res.data.id);
    await this.choose(res.data.id);
    this.say("notes.client.created");
    this.root.dispatchEvent(new CustomEvent("notes:clients", { bubbles: true }));
    this.text.focus();
  }

  async saveNote() {
    const text = this.text.value;
    if (!text.trim() || !this.clientId) {
      this.say("notes.err.empty");
      this.text.focus();
      return;
    }
    const body = { text };
    if (this.ctx.consultationId) body.consultation_id = this.ctx.consultationId;
    this.saveBtn.disabled = true;
    const res = await api(`/api/journal/clients/${encodeURIComponent(this.clientId)}/notes`, { method: "POST", body });
    this.saveBtn.disabled = false;
    if (!res.ok) {
      this.msg.textContent = errorText(res);
      return;
    }
    this.text.value = "";
    this.notes.push(res.data);
    this.renderNotes();
    this.say("notes.saved");
  }

  renderNotes() {
    this.list.replaceChildren();
    this.empty.hidden = this.notes.length > 0;
    const children = new Map();
    for (const n of this.notes) {
      if (!n.corrects) continue;
      if (!children.has(n.corrects)) children.set(n.corrects, []);
      children.get(n.corrects).push(n);
    }
    const item = (n) => {
      const meta = h("p", { class: "notes__meta small muted" },
        n.corrects ? h("strong", { text: `${t("notes.addendum.of")} · ` }) : null,
        h("time", { datetime: n.created_at, text: when(n.created_at) }),
        n.consultation_id && n.consultation_id !== this.ctx.consultationId ? ` · ${n.consultation_id}` : null);
      const li = h("li", { class: n.corrects ? "notes__entry notes__entry--addendum" : "notes__entry" },
        meta,
        h("p", { class: "notes__text", text: n.text }),
        h("button", { type: "button", class: "btn btn--small", "data-action": "addendum", "data-note-id": n.id, i18n: "notes.addendum" }));
      li.dataset.noteId = n.id;
      const sub = children.get(n.id);
      if (sub) li.append(h("ol", { class: "notes__addenda" }, ...sub.map(item)));
      return li;
    };
    for (const n of this.notes) if (!n.corrects || !this.notes.some((x) => x.id === n.corrects)) this.list.append(item(n));
  }

  onListClick(event) {
    const btn = event.target.closest("button[data-action]");
    if (!btn) return;
    const li = btn.closest("li[data-note-id]");
    if (btn.dataset.action === "addendum") this.openAddendum(li, btn);
  }

  openAddendum(li, btn) {
    if (li.querySelector(":scope > form")) {
      li.querySelector(":scope > form textarea").focus();
      return;
    }
    const note = this.notes.find((n) => n.id === li.dataset.noteId);
    const id = `addendum-${note.id}`;
    const area = h("textarea", { id, rows: "3", maxlength: "100000", class: "notes__addendum-text" });
    const save = h("button", { type: "submit", class: "btn btn--primary", i18n: "notes.addendum.save" });
    const cancel = h("button", { type: "button", class: "btn", i18n: "notes.cancel" });
    const form = h("form", { class: "stack notes__addendum-form" },
      h("label", { for: id, text: t("notes.addendum.label", { when: when(note.created_at) }) }), area,
      h("p", { class: "row" }, save, cancel));
    const close = () => {
      form.remove();
      btn.focus();
    };
    cancel.addEventListener("click", close);
    form.addEventListener("keydown", (e) => {
      if (e.key === "Escape") close();
    });
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      this.saveAddendum(note, area, save).catch((err) => this.fail(err));
    });
    btn.after(form);
    area.focus();
  }

  async saveAddendum(note, area, save) {
    const text = area.value;
    if (!text.trim()) {
      this.say("notes.err.empty");
      area.focus();
      return;
    }
    save.disabled = true;
    const path = `/api/journal/clients/${encodeURIComponent(this.clientId)}/notes/${encodeURIComponent(note.id)}/addenda`;
    const res = await api(path, { method: "POST", body: { text } });
    save.disabled = false;
    if (!res.ok) {
      this.msg.textContent = errorText(res);
      return;
    }
    this.notes.push(res.data);
    this.renderNotes();
    this.say("notes.addendum.saved");
    this.list.querySelector(`li[data-note-id="${CSS.escape(res.data.id)}"] button`)?.focus();
  }

  async exportAs(kind) {
    if (!this.clientId) return;
    const btn = kind === "json" ? this.jsonBtn : this.pdfBtn;
    btn.disabled = true;
    const id = encodeURIComponent(this.clientId);
    const res = await download(`/api/journal/clients/${id}/export.${kind}`, `${this.clientId}.${kind}`);
    btn.disabled = false;
    if (res.ok) this.say("notes.exported", { name: res.name });
    else this.msg.textContent = errorText(res);
  }
}
