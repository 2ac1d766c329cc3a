// The practitioner's login page (/login): e-mail, password and the 6-digit TOTP code, posted to
// /auth/login. The access token goes to this tab's sessionStorage and the refresh token into the
// browser's HttpOnly session cookie (session.js), never into a URL. `?next=` (one of this node's
// own pages, nothing else) is where a successful login goes; the dashboard otherwise.

import { initialLanguage, language, setLanguage, t, translatePage } from "./i18n.js";
import { login, logout, restore, session } from "./session.js";
import "./strings-practice.js";
import "./strings-account.js";

const $ = (id) => document.getElementById(id);
const ui = { state: "form", message: null, busy: false };

// Where to go after logging in: only this node's own pages (no open redirect).
function nextPage() {
  const next = new URLSearchParams(location.search).get("next") || "";
  if (/^\/room\/[A-Za-z0-9_-]{1,64}$/.test(next)) return `${next}#role=practitioner`;
  return next === "/settings" ? next : "/practice";
}

function setMessage(key, vars = {}) {
  ui.message = key ? [key, vars] : null;
  const el = $("login-msg");
  el.hidden = !key;
  el.textContent = key ? t(key, vars) : "";
  el.dataset.code = key || "";
}

async function submit(event) {
  event.preventDefault();
  if (ui.busy) return;
  const email = $("login-email").value.trim();
  const password = $("login-password").value;
  const totp = $("login-totp").value.replace(/\s+/g, "");
  // Six digits from the app, or a recovery code (10 letters and digits, a dash allowed).
  const plausible = /^[0-9]{6}$/.test(totp) || /^[0-9a-z]{5}-?[0-9a-z]{5}$/i.test(totp);
  if (!email || !password || !plausible) {
    setMessage("login.malformed");
    (!email ? $("login-email") : !password ? $("login-password") : $("login-totp")).focus();
    return;
  }
  ui.busy = true;
  $("login-btn").disabled = true;
  setMessage(null);
  $("status").textContent = t("login.checking");
  const res = await login(email, password, totp);
  ui.busy = false;
  $("login-btn").disabled = false;
  $("status").textContent = "";
  if (res.ok) {
    $("login-password").value = "";
    $("login-totp").value = "";
    location.replace(nextPage());
    return;
  }
  const code = res.error?.code || "other";
  const key = t(`login.err.${code}`) === `login.err.${code}` ? "login.err.other" : `login.err.${code}`;
  setMessage(key, { s: res.retryAfter ?? "?" });
  $("login-totp").value = "";
  (code === "invalid_credentials" ? $("login-password") : $("login-totp")).focus();
  window.fortroligLogin.lastError = code;
}

function render() {
  const s = session();
  ui.state = s ? "signed_in" : "form";
  $("login-form").hidden = Boolean(s);
  $("signed-in").hidden = !s;
  if (s) $("signed-in-text").textContent = t("login.signedin", { email: s.email || "" });
  if (ui.message) setMessage(...ui.message);
  document.title = t("login.title");
}

function bind() {
  $("lang-btn").addEventListener("click", () => {
    setLanguage(language() === "da" ? "en" : "da");
    translatePage();
    render();
  });
  $("login-form").addEventListener("submit", (e) => submit(e).catch(() => setMessage("login.err.other")));
  $("logout-btn").addEventListener("click", async () => {
    await logout();
    setMessage("session.loggedout");
    render();
    $("login-email").focus();
  });
}

// For tests: the page's state, nothing secret.
window.fortroligLogin = {
  get state() {
    return ui.state;
  },
  lastError: null,
};

setLanguage(initialLanguage());
translatePage();
bind();
if (new URLSearchParams(location.search).get("expired") === "1") setMessage("session.expired");
render();
// Another tab of this browser may be logged in already: its cookie signs this tab in too.
restore().then(() => {
  render();
  $("to-practice").href = nextPage();
  if (!session()) $("login-email").focus();
});
