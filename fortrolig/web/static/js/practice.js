// The practitioner's dashboard (/practice): create a consultation (client, verification mode),
// show the client's invite link and the practitioner's own room link, list the journal clients
// and open a journal in the notes panel. Needs a login (session.js); otherwise back to /login.

import { initialLanguage, language, setLanguage, t, translatePage } from "./i18n.js";
import { NotesPanel, storeConsultation, storedConsultations } from "./notes.js";
import { api, keepAlive, logout, onSignedOut, restore, session } from "./session.js";
import "./strings-practice.js";

const $ = (id) => document.getElementById(id);
const ui = { state: "loading", made: null, invite: null, room: null, message: null, clients: [], notes: null };

function fmt(unix) {
  return new Date(unix * 1000).toLocaleString(language(), { dateStyle: "medium", timeStyle: "short" });
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
  } else {
    const name = $("new-name").value.trim();
    const email = $("new-email").value.trim();
    if (!email) {
      setMessage("practice.new.needEmail");
      $("new-email").focus();
      return;
    }
    if (name) body.client_name = name;
    body.client_email = email;
    if ($("new-send").checked) body.send_invite = true;
  }
  setMessage(null);
  $("new-btn").disabled = true;
  $("status").textContent = t("practice.new.creating");
  const res = await api("/api/v1/consultations", { method: "POST", body });
  $("new-btn").disabled = false;
  $("status").textContent = "";
  if (!res.ok) {
    setMessage(errorKey(res), { code: res.error?.code || "other" });
    return;
  }
  const c = res.data;
  const meta = {
    consultation_id: c.consultation_id,
    room_id: c.room_id,
    verification: c.verification,
    client_name: c.client_name,
    client_email: c.client_email,
    created_at: c.created_at,
  };
  storeConsultation(meta);
  ui.made = meta;
  ui.invite = c.invite;
  $("new-form").reset();
  renderForm();
  renderMade();
  renderConsultations();
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

function renderConsultations() {
  const list = $("consultations");
  const items = storedConsultations();
  $("list-empty").hidden = items.length > 0;
  list.replaceChildren();
  for (const c of items) {
    const li = document.createElement("li");
    li.dataset.consultationId = c.consultation_id;
    const who = document.createElement("span");
    who.className = "plain-list__what";
    who.textContent = `${c.client_name || t("practice.new.verification.anonymous")} · ${fmt(c.created_at)}`;
    const label = who.textContent;
    li.append(
      who,
      link("practice.made.openRoom", roomUrl(c.room_id), { "aria-label": `${t("practice.made.openRoom")}: ${label}` }),
      button("practice.made.newInvite", () => newInvite(c), { "aria-label": `${t("practice.made.newInvite")}: ${label}` }),
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
    li.append(
      who,
      button("practice.clients.open", () => openJournal(c), { "aria-label": `${t("practice.clients.open")}: ${c.name}` }),
    );
    list.append(li);
  }
}

function openNotes(c) {
  ui.notes.setContext({
    consultationId: c.consultation_id,
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
  $("new-form").addEventListener("submit", (e) => createConsultation(e).catch((err) => {
    console.error(err);
    setMessage("practice.err.other", { code: "other" });
  }));
  $("invite-copy").addEventListener("click", () => copyInvite());
  $("made-invite").addEventListener("click", () => ui.made && newInvite(ui.made));
  $("made-notes").addEventListener("click", () => ui.made && openNotes(ui.made));
  $("practice-notes-root").addEventListener("notes:clients", () => loadClients());
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
  await Promise.all([loadClients(), ui.notes.load()]);
  ui.state = "ready";
}

main().catch((err) => {
  console.error("fortrolig: practice page failed", err);
  ui.state = "failed";
});
