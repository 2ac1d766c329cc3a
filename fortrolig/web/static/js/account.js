// The onboarding and account pages: / (home), /signup, /confirm (e-mail link + TOTP enrolment +
// recovery codes), /forgot, /reset (password by link), /settings. One module; the page is named
// by <body data-page>. Link tokens come from the URL fragment, which is removed from the address
// bar at once (it never reaches a server log or a Referer). See docs/accounts.md.

import { initialLanguage, language, setLanguage, t, translatePage } from "./i18n.js";
import { adopt, api, logout, postJson, postSession, restore, session } from "./session.js";
import "./strings-practice.js";
import "./strings-account.js";

const $ = (id) => document.getElementById(id);
const page = document.body.dataset.page;
const ui = { page, step: "start", lastError: null, recoveryCodes: null, secret: null, otpauth: null };
const shown = new Map(); // element id -> [key, vars], re-rendered on a language switch

function say(id, key, vars = {}) {
  const el = $(id);
  if (!key) {
    shown.delete(id);
    el.hidden = true;
    el.textContent = "";
    return;
  }
  shown.set(id, [key, vars]);
  el.hidden = false;
  el.textContent = t(key, vars);
}

function sayError(id, res) {
  const code = res.error?.code || "other";
  ui.lastError = code;
  const key = t(`err.${code}`) === `err.${code}` ? "err.other" : `err.${code}`;
  say(id, key, { code, s: res.retryAfter ?? "?", message: res.error?.message || "" });
}

function show(id, visible = true) {
  $(id).hidden = !visible;
}

function takeFragment() {
  const token = location.hash.slice(1);
  if (location.hash) history.replaceState(null, "", location.pathname + location.search);
  return token;
}

async function busy(button, fn) {
  if (button.disabled) return;
  button.disabled = true;
  try {
    await fn();
  } finally {
    button.disabled = false;
  }
}

function onSubmit(formId, fn) {
  const form = $(formId);
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    busy(form.querySelector("button[type=submit]"), fn).catch(() => sayError(`${formId}-msg`, {}));
  });
}

// --- sign-up -------------------------------------------------------------------------------------

function signupPage() {
  onSubmit("signup-form", async () => {
    const body = {
      display_name: $("signup-name").value.trim(),
      email: $("signup-email").value.trim(),
      password: $("signup-password").value,
    };
    if (!body.display_name || !body.email || !body.password) return say("signup-form-msg", "err.missing");
    say("signup-form-msg", null);
    const res = await postJson("/auth/signup", body);
    if (!res.ok) return sayError("signup-form-msg", res);
    $("signup-password").value = "";
    show("signup-form", false);
    show("signup-done");
    ui.step = "signed_up";
    if (res.data.confirmation_sent) say("signup-done-text", "signup.sent", { email: res.data.email });
    else {
      say("signup-done-text", "signup.nomail");
      show("signup-continue");
    }
    $("signup-done").focus();
  });
}

// --- confirmation and enrolment ----------------------------------------------------------------

async function confirmPage() {
  const token = takeFragment();
  bindEnrolment();
  if (!token) return;
  say("confirm-msg", "confirm.checking");
  const res = await postJson("/auth/email/confirm", { token });
  if (!res.ok) return sayError("confirm-msg", res);
  say("confirm-msg", "confirm.done", { email: res.data.email });
  $("enrol-email").value = res.data.email;
  ui.step = "confirmed";
  $("enrol-password").focus();
}

function bindEnrolment() {
  onSubmit("enrol-form", async () => {
    const email = $("enrol-email").value.trim();
    const password = $("enrol-password").value;
    if (!email || !password) return say("enrol-form-msg", "err.missing");
    say("enrol-form-msg", null);
    const res = await postJson("/auth/totp/enrol", { email, password });
    if (!res.ok) return sayError("enrol-form-msg", res);
    ui.secret = res.data.secret;
    ui.otpauth = res.data.otpauth_uri;
    $("enrol-qr").src = res.data.qr_svg;
    $("enrol-secret").textContent = res.data.secret.replace(/(.{4})/g, "$1 ").trim();
    show("enrol-step2");
    ui.step = "enrolling";
    $("enrol-code").focus();
  });
  onSubmit("code-form", async () => {
    const email = $("enrol-email").value.trim();
    const password = $("enrol-password").value;
    const totp = $("enrol-code").value.replace(/\s+/g, "");
    const res = await postSession("/auth/totp/confirm", { email, password, totp });
    if (!res.ok) return sayError("code-form-msg", res);
    $("enrol-password").value = "";
    if (res.data.access_token) adopt(res.data, email);
    showRecovery(res.data.recovery_codes || []);
  });
  $("recovery-continue").addEventListener("click", () => {
    if (!$("recovery-saved").checked) {
      say("recovery-msg", "recovery.needSaved");
      $("recovery-saved").focus();
      return;
    }
    location.assign(session() ? "/practice" : "/login");
  });
}

function showRecovery(codes) {
  ui.recoveryCodes = codes;
  show("enrol-section", false);
  show("recovery-section");
  const list = $("recovery-list");
  list.replaceChildren(
    ...codes.map((c) => {
      const li = document.createElement("li");
      li.textContent = c;
      return li;
    }),
  );
  ui.step = "recovery";
  $("recovery-heading").focus();
}

// --- forgotten password -----------------------------------------------------------------------

function forgotPage() {
  onSubmit("forgot-form", async () => {
    const email = $("forgot-email").value.trim();
    if (!email) return say("forgot-form-msg", "err.missing");
    const res = await postJson("/auth/password/forgot", { email });
    if (!res.ok) return sayError("forgot-form-msg", res);
    say("forgot-form-msg", "forgot.sent", { email });
    ui.step = "sent";
  });
}

function resetPage() {
  const token = takeFragment();
  if (!token) {
    say("reset-form-msg", "reset.nolink");
    show("reset-form", false);
    return;
  }
  onSubmit("reset-form", async () => {
    const a = $("reset-password").value;
    if (!a) return say("reset-form-msg", "err.missing");
    if (a !== $("reset-repeat").value) return say("reset-form-msg", "reset.mismatch");
    const res = await postJson("/auth/password/reset", { token, new_password: a });
    if (!res.ok) return sayError("reset-form-msg", res);
    show("reset-form", false);
    say("reset-done", "reset.done");
    show("reset-login");
    ui.step = "done";
  });
}

// --- settings ----------------------------------------------------------------------------------

async function settingsPage() {
  if (!(await restore())) return location.replace("/login?next=/settings");
  const me = await api("/api/v1/account");
  if (!me.ok) return location.replace("/login?expired=1");
  say("settings-email", "settings.email", { email: me.data.email });
  say("settings-codes", "settings.codesLeft", { n: me.data.recovery_codes_left });
  $("settings-name").value = me.data.display_name;
  ui.step = "ready";
  onSubmit("name-form", async () => {
    const res = await api("/api/v1/account/name", { method: "POST", body: { display_name: $("settings-name").value } });
    if (!res.ok) return sayError("name-form-msg", res);
    say("name-form-msg", "settings.nameSaved");
  });
  onSubmit("password-form", async () => {
    const body = {
      email: me.data.email,
      current_password: $("pw-current").value,
      totp: $("pw-code").value.trim(),
      new_password: $("pw-new").value,
    };
    const res = await postJson("/auth/password", body);
    if (!res.ok) return sayError("password-form-msg", res);
    await logout();
    location.replace("/login");
  });
  onSubmit("factor-form", async () => {
    const body = { password: $("factor-password").value, totp: $("factor-code").value.trim() };
    const res = await api("/api/v1/account/second-factor/reset", { method: "POST", body });
    if (!res.ok) return sayError("factor-form-msg", res);
    await logout();
    location.replace("/confirm");
  });
  $("logout-all").addEventListener("click", async () => {
    const res = await api("/api/v1/account/logout-all", { method: "POST", body: {} });
    if (!res.ok) return sayError("logout-all-msg", res);
    await logout();
    location.replace("/login");
  });
}

// --- common ------------------------------------------------------------------------------------

function retranslate() {
  translatePage();
  for (const [id, [key, vars]] of shown) $(id).textContent = t(key, vars);
  document.title = t(`${page}.title`);
  const qr = $("enrol-qr");
  if (qr) qr.alt = t("confirm.qrAlt");
}

window.fortroligAccount = ui; // for tests: the page's step and last error code

setLanguage(initialLanguage());
retranslate();
$("lang-btn").addEventListener("click", () => {
  setLanguage(language() === "da" ? "en" : "da");
  document.documentElement.lang = language();
  retranslate();
});
document.documentElement.lang = language();
const run = { signup: signupPage, confirm: confirmPage, forgot: forgotPage, reset: resetPage, settings: settingsPage }[page];
Promise.resolve(run ? run() : null).catch(() => {
  ui.lastError = "other";
});
