// The chat log and the safety codes on the room page: DOM only, every text through textContent.

import { clockTime, t } from "./i18n.js";

const MAX_CHAT_LINES = 500;

/** A decrypted message: who (a name or "You"), when, the text. */
export function appendChatLine(log, { who, mine, ts, text }) {
  const li = document.createElement("li");
  li.className = mine ? "chat__line chat__line--mine" : "chat__line";
  const head = document.createElement("span");
  head.className = "chat__who";
  head.textContent = who;
  const time = document.createElement("time");
  const when = new Date(typeof ts === "number" ? ts : Date.now());
  time.dateTime = when.toISOString();
  time.textContent = clockTime(when);
  const body = document.createElement("p");
  body.className = "chat__text";
  body.textContent = text;
  li.append(head, " ", time, body);
  append(log, li);
}

/** A line of the page's own (a key changed, a message could not be sent...). */
export function appendSystemLine(log, text) {
  const li = document.createElement("li");
  li.className = "chat__line chat__line--system";
  li.textContent = text;
  append(log, li);
}

function append(log, li) {
  log.append(li);
  while (log.children.length > MAX_CHAT_LINES) log.firstElementChild.remove();
  log.scrollTop = log.scrollHeight;
}

/** One safety code per participant present (``participant(id)``), then how to use them. */
export function renderSafetyCodes(list, codes, participant, displayName) {
  list.replaceChildren();
  for (const [id, code] of Object.entries(codes)) {
    const p = participant(id);
    if (!p) continue;
    const li = document.createElement("li");
    li.dataset.participantId = id;
    const label = document.createElement("span");
    label.textContent = t("chat.safety.with", { name: displayName(p) });
    const strong = document.createElement("strong");
    strong.className = "safety__code";
    strong.textContent = code;
    li.append(label, " ", strong);
    list.append(li);
  }
  if (list.children.length) {
    const help = document.createElement("li");
    help.className = "muted small";
    help.textContent = t("chat.safety.help");
    list.append(help);
  }
}
