// The practitioner's login session in the browser (docs/accounts.md, docs/security.md "Browser
// login across tabs"). The refresh token lives in an HttpOnly, SameSite=Strict cookie scoped to
// /auth that no script can read; each tab keeps only its own short-lived access token in its
// sessionStorage (never in a URL, never in localStorage). A tab without one (a new tab, a link
// opened from the dashboard) gets one from the cookie (`restore()`), so a practitioner stays
// logged in across the tabs of one browser. Every refresh rotates the cookie, so refreshes of
// all tabs are serialised with a Web Lock: two tabs presenting the same cookie at once would
// look like a stolen token and end the session. Logging out in one tab tells the others
// (BroadcastChannel). Calls to the API go through `api()`, which adds the Authorization header
// and refreshes once when the server says the token has expired.

const KEY = "fortrolig.session";
const REFRESH_MARGIN_S = 60; // refresh this long before the access token expires
const COOKIE_SESSION = { "X-Fortrolig-Session": "cookie" };
const LOCK = "fortrolig.refresh";
const listeners = new Set();
let inflight = null; // the one refresh in progress in this tab
let timer = null;
const channel = typeof BroadcastChannel === "function" ? new BroadcastChannel("fortrolig.session") : null;
channel?.addEventListener("message", (ev) => {
  if (ev.data === "logout" && session()) forget("logout", false);
});

function now() {
  return Date.now() / 1000;
}

/** This tab's session, or null: {access_token, expires_at, refresh_expires_at, practitioner_id, email}. */
export function session() {
  try {
    const raw = sessionStorage.getItem(KEY);
    const s = raw ? JSON.parse(raw) : null;
    if (!s?.access_token) return null;
    if (typeof s.refresh_expires_at === "number" && s.refresh_expires_at <= now()) return null;
    return s;
  } catch {
    return null;
  }
}

export function signedIn() {
  return session() !== null;
}

function store(body, email) {
  const s = {
    practitioner_id: body.practitioner_id,
    access_token: body.access_token,
    expires_at: body.expires_at,
    refresh_expires_at: body.refresh_expires_at,
    email: email ?? session()?.email ?? null,
  };
  sessionStorage.setItem(KEY, JSON.stringify(s));
  schedule();
  return s;
}

function forget(reason, tellOthers = reason === "logout") {
  try {
    sessionStorage.removeItem(KEY);
  } catch {
    // nothing stored
  }
  clearTimeout(timer);
  timer = null;
  if (tellOthers) channel?.postMessage("logout");
  for (const fn of listeners) fn(reason);
}

/** Called with a reason ("logout", "expired") when the session ends in this tab. */
export function onSignedOut(fn) {
  listeners.add(fn);
}

/**
 * POST a JSON body; answers {ok, status, data, error, retryAfter}. No cookies go with it unless
 * `cookie` (the session routes under /auth, the only path the refresh cookie is scoped to).
 */
export async function postJson(path, body, headers = {}, cookie = false) {
  let resp;
  try {
    resp = await fetch(path, {
      method: "POST",
      headers: { "Content-Type": "application/json", ...headers },
      body: JSON.stringify(body),
      credentials: cookie ? "same-origin" : "omit",
      cache: "no-store",
      referrerPolicy: "no-referrer",
    });
  } catch {
    return { ok: false, status: 0, error: { code: "network" } };
  }
  return answer(resp);
}

async function answer(resp) {
  let data = {};
  try {
    data = resp.status === 204 ? {} : await resp.json();
  } catch {
    // not JSON: the status speaks
  }
  const retry = Number.parseInt(resp.headers.get("Retry-After") ?? "", 10);
  return {
    ok: resp.ok,
    status: resp.status,
    data,
    error: resp.ok ? null : data?.error || { code: "other" },
    retryAfter: Number.isFinite(retry) ? retry : null,
  };
}

/** Keep the access token of a session the server just started (e.g. after TOTP enrolment). */
export function adopt(body, email) {
  return store(body, email);
}

/** POST to a route that starts a cookie session (login, TOTP confirm): the refresh token comes
 * back as the HttpOnly cookie, never in the body. */
export function postSession(path, body) {
  return postJson(path, body, COOKIE_SESSION, true);
}

/** Log in with e-mail, password and the 6-digit code; stores the access token on success. */
export async function login(email, password, totp) {
  const res = await postSession("/auth/login", { email, password, totp });
  if (res.ok) store(res.data, email.trim());
  return res;
}

// One refresh at a time across every tab of this browser (the cookie rotates on each).
function exclusive(fn) {
  return navigator.locks?.request ? navigator.locks.request(LOCK, fn) : fn();
}

async function cookieRefresh() {
  return exclusive(() => postJson("/auth/refresh", {}, COOKIE_SESSION, true));
}

/** Rotate the tokens now (one refresh at a time). Resolves to true when the session lives on. */
export function refresh() {
  if (inflight) return inflight;
  if (!session()) return Promise.resolve(false);
  inflight = (async () => {
    const res = await cookieRefresh();
    if (res.ok) {
      store(res.data);
      return true;
    }
    // A network failure keeps the session (try again later); a refusal ends it.
    if (res.status === 0 || res.status >= 500) return false;
    forget("expired", false);
    return false;
  })().finally(() => {
    inflight = null;
  });
  return inflight;
}

/**
 * Make sure this tab has a session: its own, or a new access token from the browser's login
 * cookie (another tab logged in). Resolves to true when signed in.
 */
export async function restore() {
  if (session()) return true;
  const res = await cookieRefresh();
  if (!res.ok) return false;
  store(res.data);
  const me = await api("/api/v1/account");
  if (me.ok && me.data?.email && session()) store(session(), me.data.email);
  return session() !== null;
}

function schedule() {
  clearTimeout(timer);
  const s = session();
  if (!s) return;
  const wait = Math.max(5, s.expires_at - now() - REFRESH_MARGIN_S);
  timer = setTimeout(() => {
    refresh().finally(() => (session() ? schedule() : null));
  }, wait * 1000);
}

/** Keep the access token fresh while this page is open. */
export function keepAlive() {
  if (!session()) return false;
  schedule();
  return true;
}

async function accessToken() {
  const s = session();
  if (!s) return null;
  if (s.expires_at - now() < REFRESH_MARGIN_S / 2) await refresh();
  return session()?.access_token ?? null;
}

/**
 * Call the API with the access token. `body` is sent as JSON; `raw: true` answers the Response
 * itself (for downloads). Answers like postJson otherwise; status 401 "signed_out" without a session.
 */
export async function api(path, { method = "GET", body, raw = false } = {}) {
  for (let attempt = 0; attempt < 2; attempt += 1) {
    const token = await accessToken();
    if (!token) return { ok: false, status: 401, error: { code: "signed_out" } };
    const headers = { Authorization: `Bearer ${token}` };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    let resp;
    try {
      resp = await fetch(path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        credentials: "omit",
        cache: "no-store",
        referrerPolicy: "no-referrer",
      });
    } catch {
      return { ok: false, status: 0, error: { code: "network" } };
    }
    if (resp.status === 401 && attempt === 0 && (await refresh())) continue;
    if (resp.status === 401) forget("expired");
    if (raw && resp.ok) return { ok: true, status: resp.status, resp };
    return answer(resp);
  }
  return { ok: false, status: 401, error: { code: "signed_out" } };
}

/** Download an API file (fetch + blob; the token goes in a header, never in a URL). */
export async function download(path, fallbackName) {
  const res = await api(path, { raw: true });
  if (!res.ok) return res;
  const blob = await res.resp.blob();
  const disposition = res.resp.headers.get("Content-Disposition") || "";
  const name = /filename="([^"]+)"/.exec(disposition)?.[1] || fallbackName;
  const url = URL.createObjectURL(blob);
  const a = document.createElement("a");
  a.href = url;
  a.download = name;
  a.hidden = true;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
  return { ok: true, status: res.status, name };
}

/** End this login (its refresh family) on the server and in every tab of this browser. */
export async function logout() {
  await exclusive(() => postJson("/auth/logout", {}, COOKIE_SESSION, true));
  forget("logout");
}
