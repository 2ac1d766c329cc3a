// The invite page (/invite#<secret>): redeems the single-use invite by POST, shows the
// verification the practitioner chose (an e-mail code, an anonymous notice, or MitID: the page
// goes on to the broker, which comes back to /eid/callback) and continues to the room page with
// the join token it obtained (in the fragment, as a direct link would). After a failed MitID
// login the server sends the browser back here with /invite#error=<code>; the page shows it.
// The secret never travels in a URL the server sees, and it leaves the address bar at once.

import { initialLanguage, language, setLanguage, t, translatePage } from "./i18n.js";

const $ = (id) => document.getElementById(id);
const PENDING_KEY = "fortrolig.invite.pending"; // a code was sent: reloading keeps the form

const ui = { state: "checking", grant: null, pending: null, error: null, message: null };

// The fragment is the invite secret (43 base64url characters: never "="), or error=<code>.
function readFragment() {
  const fragment = location.hash.slice(1);
  if (location.hash) history.replaceState(null, "", location.pathname + location.search);
  const error = /^error=([a-z0-9_]{1,64})$/.exec(fragment);
  return error ? { error: error[1] } : { secret: fragment };
}

async function post(path, body) {
  let resp;
  try {
    resp = await fetch(path, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
      credentials: "omit",
      cache: "no-store",
      referrerPolicy: "no-referrer",
    });
  } catch {
    return { ok: false, error: { code: "network" } };
  }
  let data = {};
  try {
    data = await resp.json();
  } catch {
    // an empty or non-JSON body: only the status speaks
  }
  return resp.ok ? { ok: true, data } : { ok: false, error: data.error || { code: "other" } };
}

async function redeem(secret) {
  const res = await post("/api/v1/invite/redeem", { invite: secret });
  if (!res.ok) return fail(res.error.code);
  if (res.data.status === "eid_redirect") {
    storePending(null);
    setState("eid");
    // To the broker's MitID login; it comes back to /eid/callback, which continues to the room.
    return location.assign(res.data.redirect);
  }
  if (res.data.status === "code_sent") {
    ui.pending = { handle: res.data.handle, hint: res.data.email_hint };
    storePending(ui.pending);
    return setState("code");
  }
  ui.grant = res.data;
  setState("anonymous");
}

async function submitCode(event) {
  event.preventDefault();
  const input = $("code-input");
  const code = input.value.replace(/\s+/g, "");
  if (!/^[0-9]{6}$/.test(code)) return codeMessage("invite.code.malformed");
  $("code-btn").disabled = true;
  codeMessage(null);
  setStatus("invite.code.checking");
  const res = await post("/api/v1/invite/verify", { handle: ui.pending.handle, code });
  $("code-btn").disabled = false;
  setStatus(null);
  if (res.ok) {
    storePending(null);
    return goToRoom(res.data);
  }
  const err = res.error;
  const final = { code_attempts_exhausted: "invite.code.exhausted", code_expired: "invite.code.expired", code_used: "invite.code.used" };
  if (err.code === "code_invalid") {
    if (err.attempts_left === 0) return finalCode("invite.code.exhausted");
    input.select();
    return codeMessage("invite.code.invalid", { n: err.attempts_left ?? "?" });
  }
  if (err.code === "code_malformed") return codeMessage("invite.code.malformed");
  if (final[err.code]) return finalCode(final[err.code]);
  storePending(null);
  fail(err.code);
}

function finalCode(key) {
  storePending(null);
  $("code-input").disabled = true;
  $("code-btn").disabled = true;
  codeMessage(key);
  ui.state = "failed";
  window.fortroligInvite.lastError = key;
}

function goToRoom(grant) {
  ui.grant = grant;
  setState("verified");
  // The room page reads the token from the fragment and removes it from the address bar.
  location.replace(grant.room_url);
}

// The broker could not be used (not the user's doing): one message for these.
const EID_UNAVAILABLE = new Set(["eid_discovery_failed", "eid_jwks_failed", "eid_too_many_pending"]);

function fail(code) {
  const key = EID_UNAVAILABLE.has(code) ? "invite.err.eid_unavailable" : `invite.err.${code}`;
  const fallback = code.startsWith("eid_") ? "invite.err.eid_failed" : "invite.err.other";
  ui.error = t(key) === key ? fallback : key;
  window.fortroligInvite.lastError = code;
  setState("failed");
}

function codeMessage(key, vars = {}) {
  const el = $("code-msg");
  el.hidden = !key;
  el.textContent = key ? t(key, vars) : "";
  ui.message = key ? [key, vars] : null;
}

function setStatus(key) {
  $("status").textContent = key ? t(key) : "";
}

function setState(state) {
  ui.state = state;
  render();
  if (state === "code") $("code-input").focus();
  if (state === "anonymous") $("anon-btn").focus();
}

function render() {
  $("code-form").hidden = ui.state !== "code";
  $("anon").hidden = ui.state !== "anonymous";
  if (ui.pending) $("code-sent").textContent = t("invite.code.sent", { email: ui.pending.hint });
  const err = $("invite-error");
  err.hidden = ui.state !== "failed" || !ui.error;
  err.textContent = ui.error ? t(ui.error) : "";
  if (ui.message) codeMessage(...ui.message);
  const status = { checking: "invite.checking", verified: "invite.verified", eid: "invite.eid.redirecting" }[ui.state];
  setStatus(status || null);
  $("status").dataset.state = ui.state === "failed" ? "ended" : "connecting";
}

function storePending(pending) {
  try {
    if (pending) sessionStorage.setItem(PENDING_KEY, JSON.stringify(pending));
    else sessionStorage.removeItem(PENDING_KEY);
  } catch {
    // storage disabled: a reload then needs a new invitation
  }
}

function readPending() {
  try {
    const raw = sessionStorage.getItem(PENDING_KEY);
    return raw ? JSON.parse(raw) : null;
  } catch {
    return null;
  }
}

function bind() {
  $("lang-btn").addEventListener("click", () => {
    setLanguage(language() === "da" ? "en" : "da");
    translatePage();
    render();
  });
  $("code-form").addEventListener("submit", (e) => submitCode(e).catch(() => fail("other")));
  $("code-input").addEventListener("input", () => codeMessage(null));
  $("anon-btn").addEventListener("click", () => goToRoom(ui.grant));
}

// For tests and support: the page's state, nothing secret.
window.fortroligInvite = {
  get state() {
    return ui.state;
  },
  lastError: null,
};

async function main() {
  setLanguage(initialLanguage());
  translatePage();
  bind();
  const { secret, error } = readFragment();
  if (error) {
    storePending(null);
    return fail(error);
  }
  if (secret) return redeem(secret);
  const pending = readPending(); // a reload after the code was sent
  if (pending?.handle) {
    ui.pending = pending;
    return setState("code");
  }
  fail("invite_malformed");
}

main().catch((err) => {
  console.error("fortrolig: invite page failed", err);
  fail("other");
});
