// The subscription card on /practice: the state and what it allows, in plain words, the free
// trial started from the page, and in export-only state the way to the journals' export.
// Its own module beside practice.js: it only reads GET /api/v1/subscription and posts the trial.

import { language, t } from "./i18n.js";
import { api } from "./session.js";
import "./strings-account.js";

const $ = (id) => document.getElementById(id);
const plan = { state: null, access: null, lastError: null };

function day(iso) {
  if (!iso) return "";
  return new Date(iso).toLocaleDateString(language() === "da" ? "da-DK" : "en-GB", {
    year: "numeric",
    month: "long",
    day: "numeric",
  });
}

function render(status) {
  plan.state = status.state;
  plan.access = status.access;
  const until = day(status.until || status.trial_end || status.ends_at);
  $("plan-state").textContent = t(`plan.state.${status.state}`, { until });
  $("plan-state").dataset.state = status.state;
  const none = status.access === "none" && status.state === "none";
  $("plan-access").textContent = t(none ? "plan.access.start" : `plan.access.${status.access}`, { until });
  $("plan-trial").hidden = status.state !== "none";
  $("plan-export").hidden = status.access !== "export_only";
}

async function load(attempt = 0) {
  const res = await api("/api/v1/subscription");
  if (!res.ok) {
    plan.lastError = res.error?.code || "other";
    // A token refreshed in the very second of a suspension is still refused (whole-second
    // token times): try again shortly, a few times.
    if (attempt < 3 && res.status !== 0) setTimeout(() => load(attempt + 1), 1500);
    return;
  }
  plan.lastError = null;
  render(res.data);
}

async function startTrial() {
  $("plan-trial").disabled = true;
  const res = await api("/api/v1/subscription/trial", { method: "POST", body: {} });
  $("plan-trial").disabled = false;
  const msg = $("plan-msg");
  if (!res.ok) {
    plan.lastError = res.error?.code || "other";
    const key = `err.${plan.lastError}`;
    msg.textContent = t(t(key) === key ? "err.other" : key, { code: plan.lastError });
  } else {
    render(res.data);
    msg.textContent = t("plan.started");
  }
  msg.hidden = false;
}

// practice.js may have translated the page before these strings were added: fill ours now.
for (const el of document.querySelectorAll("#plan [data-i18n], #settings-link")) {
  el.textContent = t(el.dataset.i18n);
}

window.fortroligPlan = plan; // for tests: the state shown
$("plan-trial").addEventListener("click", () => startTrial());
$("lang-btn").addEventListener("click", () => load(3));
load();
