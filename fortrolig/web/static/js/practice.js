// The practitioner's dashboard (/practice): create a consultation for a journal client (or
// anonymous) at a date and time, with the verification modes and room size this node offers;
// show the client's invite link and the way into the room; list the consultations from the
// server with their state, and the journal clients with theirs; open a journal in the notes
// panel. Needs a login (session.js); otherwise back to /login.

import { initialLanguage, language, setLanguage, t, translatePage } from "./i18n.js";
import { NotesPanel } from "./notes.js";
import { api, keepAlive, logout, onSignedOut, restore, session } from "./session.js";
import "./strings-practice.js";

const $ = (id) => document.getElementById(id);
const LIST_EVERY_MS = 10_000; // the list follows the rooms' states while the page is open
const ui = {
  state: "loading",
  made: null,
  invite: null,
  message: null,
  clients: [],
  consultations: [],
  options: null,
  notes: null,
};

/** Local time with the zone named ("8. dec. 2026 14.00 CET"). */
function fmt(unix) {
  // (dateStyle/timeStyle cannot be combined with timeZoneName.)
  // European conventions (24-hour clock, CET/CEST) in both languages.
  return new Date(unix * 1000).toLocaleString(language() === "da" ? "da-DK" : "en-GB", {
    weekday: "short",
    year: "numeric",
    month: "short",
    day: "numeric",
    hour: "2-digit",
    minute: "2-digit",
    timeZoneName: "short",
  });
}

function zoneName() {
  return Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";
}

function setMessage(key, vars = {}) {
  ui.message = key ? [key, vars] : null;
  const el = $("new-msg");
  el.hidden = !key;
  el.textContent = key ? t(key, vars) : "";
}

function errorKey(res) {
  const key = `practice.err.${res.error?.code || "other"}`;
  return t(key) === key ? "practice.err.other" : key;
}

// -- new consultation ------------------------------------------------------------------------

function renderForm() {
  const anonymous = $("new-verification").value === "anonymous";
  $("identified-fields").hidden = anonymous;
  $("anonymous-field").hidden = !anonymous;
  $("new-client-fields").hidden = Boolean($("new-client").value);
  $("new-zone").textContent = t("practice.new.zone", { zone: zoneName() });
  const max = ui.options?.max_participants ?? 2;
  $("new-size-label").textContent = t("practice.new.size", { n: max });
}

// The verification modes and room sizes this node offers (eID only where configured).
function renderOptions() {
  const o = ui.options;
  if (!o) return;
  const select = $("new-verification");
  const chosen = select.value;
  select.replaceChildren();
  for (const mode of o.verification) {
    const opt = new Option(t(`practice.new.verification.${mode}`), mode, mode === o.verification[0], mode === chosen);
    opt.dataset.i18n = `practice.new.verification.${mode}`;
    select.append(opt);
  }
  const size = $("new-size");
  const current = Number(size.value) || o.default_participants;
  size.replaceChildren();
  for (let n = 2; n <= o.max_participants; n += 1) {
    size.append(new Option(String(n), String(n), n === o.default_participants, n === current));
  }
}

function renderClientChoice() {
  const select = $("new-client");
  const chosen = select.value;
  const fresh = new Option(t("practice.new.client.new"), "", false, !chosen);
  fresh.dataset.i18n = "practice.new.client.new";
  select.replaceChildren(fresh);
  for (const c of ui.clients) select.append(new Option(c.contact ? `${c.name} (${c.contact})` : c.name, c.id, false, c.id === chosen));
}

function onClientChosen() {
  const c = ui.clients.find((x) => x.id === $("new-client").value);
  if (c?.contact?.includes("@")) $("new-email").value = c.contact;
  renderForm();
}

/** The appointment from the date and time fields (local), as unix seconds; null when empty. */
function scheduledAt() {
  const date = $("new-date").value;
  if (!date) return null;
  const time = $("new-time").value || "09:00";
  const ms = new Date(`${date}T${time}`).getTime(); // read as local time
  return Number.isFinite(ms) ? Math.round(ms / 1000) : null;
}

async function journalClientFor(name, email) {
  const body = { name };
  if (email) body.contact = email;
  const res = await api("/api/journal/clients", { method: "POST", body });
  return res.ok ? { id: res.data.id } : { error: res };
}

async function createConsultation(event) {
  event.preventDefault();
  const verification = $("new-verification").value;
  const body = { verification };
  if (verification === "anonymous") {
    if (!$("new-anonymous").checked) {
      setMessage("practice.new.needConfirm");
      $("new-anonymous").focus();
      return;
    }
  }
  const existing = ui.clients.find((x) => x.id === $("new-client").value);
  const name = existing ? existing.name : $("new-name").value.trim();
  const email = $("new-email").value.trim();
  if (verification !== "anonymous") {
    if (!name) {
      setMessage("practice.new.needName");
      $("new-name").focus();
      return;
    }
    if (verification === "email_code" && !email) {
      setMessage("practice.new.needEmail");
      $("new-email").focus();
      return;
    }
    body.client_name = name;
    if (email) body.client_email = email;
    if (email && $("new-send").checked) body.send_invite = true;
  }
  const when = scheduledAt();
  if (when !== null) body.scheduled_at = when;
  if (ui.options) body.max_participants = Number($("new-size").value) || ui.options.default_participants;
  setMessage(null);
  $("new-btn").disabled = true;
  $("status").textContent = t("practice.new.creating");
  try {
    // Every identified consultation belongs to a journal client: the chosen one, or a new one
    // made now, so that all of a client's consultations share one journal.
    if (verification !== "anonymous") {
      const client = existing ? { id: existing.id } : await journalClientFor(name, email);
      if (client.error) return setMessage(errorKey(client.error), { code: client.error.error?.code || "other" });
      body.journal_client_id = client.id;
      if (!existing) {
        // Chosen from now on: a retry after a failure below does not make a second journal.
        await loadClients();
        $("new-client").value = client.id;
        renderForm();
      }
    }
    const res = await api("/api/v1/consultations", { method: "POST", body });
    if (!res.ok) return setMessage(errorKey(res), { code: res.error?.code || "other" });
    ui.made = res.data;
    ui.invite = res.data.invite;
  } finally {
    $("new-btn").disabled = false;
    $("status").textContent = session()?.email || "";
  }
  $("new-form").reset();
  await Promise.all([loadClients(), loadConsultations()]);
  renderOptions();
  renderForm();
  renderMade();
  $("made").focus();
}

// -- the practitioner's room and new invites ------------------------------------------------------

// The practitioner's way into a room: no token in the link. The room page asks for a fresh
// single-use join token itself with this browser's login (session.js), so the link works at
// any time, in any tab, and after a reload.
function roomUrl(roomId) {
  return `/room/${encodeURIComponent(roomId)}#role=practitioner`;
}

// A new invite for a consultation: the earlier links stop working (invite_revoked); e-mailed to
// the client when the consultation has their address.
async function newInvite(c) {
  setMessage(null);
  const send = Boolean(c.client_email);
  const res = await api(`/api/v1/consultations/${encodeURIComponent(c.consultation_id)}/invites`, {
    method: "POST",
    body: { send },
  });
  if (!res.ok) {
    setMessage(errorKey(res), { code: res.error?.code || "other" });
    return;
  }
  ui.made = c;
  ui.invite = { ...res.data, renewed: true };
  renderMade();
  $("made").focus();
}

function renderMade() {
  const made = ui.made;
  $("made").hidden = !made;
  if (!made) return;
  $("made-who").textContent = `${made.client_name || t("practice.new.verification.anonymous")} · ${made.consultation_id}`;
  $("invite-link").value = ui.invite?.url || "";
  const info = [];
  if (ui.invite?.renewed) info.push(t("practice.made.renewed"));
  if (ui.invite?.sent) info.push(t("practice.made.inviteSent"));
  if (ui.invite?.expires_at) info.push(t("practice.made.expires", { when: fmt(ui.invite.expires_at) }));
  $("invite-info").textContent = info.join(" ");
  $("room-link").setAttribute("href", roomUrl(made.room_id));
}

async function copyInvite() {
  const input = $("invite-link");
  input.select();
  try {
    await navigator.clipboard.writeText(input.value);
  } catch {
    document.execCommand?.("copy");
  }
  $("invite-info").textContent = t("practice.made.copied");
}

// -- lists -------------------------------------------------------------------------------------

function button(key, onClick, attrs = {}) {
  const b = document.createElement("button");
  b.type = "button";
  b.className = "btn btn--small";
  b.dataset.i18n = key;
  b.textContent = t(key);
  for (const [k, v] of Object.entries(attrs)) b.setAttribute(k, v);
  b.addEventListener("click", onClick);
  return b;
}

function link(key, href, attrs = {}) {
  const a = document.createElement("a");
  a.className = "btn btn--small";
  a.href = href;
  a.dataset.i18n = key;
  a.textContent = t(key);
  for (const [k, v] of Object.entries(attrs)) a.setAttribute(k, v);
  return a;
}

function stateChip(state) {
  const chip = document.createElement("span");
  chip.className = "state";
  chip.dataset.state = state;
  chip.textContent = t(`practice.state.${state}`);
  return chip;
}

function whenOf(c) {
  return c.scheduled_at ? fmt(c.scheduled_at) : t("practice.when.none");
}

async function loadConsultations() {
  const res = await api("/api/v1/consultations");
  if (!res.ok) return;
  ui.consultations = res.data.consultations || [];
  renderConsultations();
  renderClients();
}

function renderConsultations() {
  const list = $("consultations");
  const items = ui.consultations;
  $("list-empty").hidden = items.length > 0;
  list.replaceChildren();
  for (const c of items) {
    const li = document.createElement("li");
    li.dataset.consultationId = c.consultation_id;
    li.dataset.state = c.state;
    const who = document.createElement("span");
    who.className = "plain-list__what";
    who.textContent = `${c.client_name || t("practice.new.verification.anonymous")} · ${whenOf(c)}`;
    const label = who.textContent;
    const open = c.state !== "ended";
    li.append(
      who,
      stateChip(c.state),
      open ? link("practice.made.openRoom", roomUrl(c.room_id), { "aria-label": `${t("practice.made.openRoom")}: ${label}` }) : null,
      open ? button("practice.made.newInvite", () => newInvite(c), { "aria-label": `${t("practice.made.newInvite")}: ${label}` }) : null,
      button("practice.made.notes", () => openNotes(c), { "aria-label": `${t("practice.made.notes")}: ${label}` }),
    );
    list.append(li);
  }
}

async function loadClients() {
  const res = await api("/api/journal/clients");
  if (!res.ok) return;
  ui.clients = res.data.clients || [];
  renderClients();
  renderClientChoice();
}

function renderClients() {
  const list = $("clients");
  list.replaceChildren();
  $("clients-empty").hidden = ui.clients.length > 0;
  for (const c of ui.clients) {
    const li = document.createElement("li");
    li.dataset.clientId = c.id;
    const who = document.createElement("span");
    who.className = "plain-list__what";
    who.textContent = c.contact ? `${c.name} (${c.contact})` : c.name;
    // The client's consultations, past and upcoming (one journal for all of them).
    const theirs = ui.consultations.filter((x) => x.journal_client_id === c.id);
    const sub = document.createElement("ul");
    sub.className = "sub-list";
    sub.setAttribute("aria-label", t("practice.clients.count", { n: theirs.length }));
    for (const x of theirs) {
      const item = document.createElement("li");
      item.dataset.consultationId = x.consultation_id;
      item.append(`${whenOf(x)} `, stateChip(x.state));
      sub.append(item);
    }
    if (!theirs.length) sub.append(Object.assign(document.createElement("li"), { textContent: t("practice.clients.none") }));
    li.append(
      who,
      button("practice.clients.open", () => openJournal(c), { "aria-label": `${t("practice.clients.open")}: ${c.name}` }),
      sub,
    );
    list.append(li);
  }
}

function openNotes(c) {
  ui.notes.setContext({
    consultationId: c.consultation_id,
    clientId: c.journal_client_id ?? null,
    suggestedName: c.client_name,
    suggestedContact: c.client_email,
  });
  $("practice-notes").focus();
}

function openJournal(c) {
  ui.notes.setContext({ contextKey: "practice", clientId: c.id });
  $("practice-notes").focus();
}

// -- start-up ----------------------------------------------------------------------------------

function render() {
  document.title = t("practice.title");
  const s = session();
  $("status").textContent = s?.email || "";
  renderOptions();
  renderClientChoice();
  renderForm();
  renderMade();
  renderConsultations();
  renderClients();
  if (ui.message) setMessage(...ui.message);
}

function bind() {
  $("lang-btn").addEventListener("click", () => {
    setLanguage(language() === "da" ? "en" : "da");
    translatePage();
    render();
  });
  $("logout-btn").addEventListener("click", () => logout());
  $("new-verification").addEventListener("change", renderForm);
  $("new-client").addEventListener("change", onClientChosen);
  $("new-form").addEventListener("submit", (e) => createConsultation(e).catch((err) => {
    console.error(err);
    setMessage("practice.err.other", { code: "other" });
  }));
  $("invite-copy").addEventListener("click", () => copyInvite());
  $("made-invite").addEventListener("click", () => ui.made && newInvite(ui.made));
  $("made-notes").addEventListener("click", () => ui.made && openNotes(ui.made));
  $("practice-notes-root").addEventListener("notes:clients", () => loadClients());
  // States change as clients arrive and sessions end: follow them while the tab is visible.
  setInterval(() => {
    if (document.visibilityState === "visible") loadConsultations().catch(() => {});
  }, LIST_EVERY_MS);
}

window.fortroligPractice = {
  get state() {
    return ui.state;
  },
};

async function main() {
  setLanguage(initialLanguage());
  if (!(await restore())) {
    location.replace("/login");
    return;
  }
  onSignedOut((reason) => location.replace(reason === "logout" ? "/login" : "/login?expired=1"));
  keepAlive();
  translatePage();
  bind();
  ui.notes = new NotesPanel($("practice-notes-root"), { contextKey: "practice" });
  render();
  const options = await api("/api/v1/consultation-options");
  if (options.ok) ui.options = options.data;
  renderOptions();
  renderForm();
  await Promise.all([loadClients(), loadConsultations(), ui.notes.load()]);
  ui.state = "ready";
}

main().catch((err) => {
  console.error("fortrolig: practice page failed", err);
  ui.state = "failed";
});
