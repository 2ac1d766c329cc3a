// The practitioner's waiting room list: who waits, how each proved who they are (a verified
// e-mail, eID name, pseudonym or nothing), whether they came back through their invite, and
// the admit / deny buttons (app.js handles their clicks). Text goes in through textContent.

const VERIFICATION_KEYS = {
  email_code: "waiting.how.email_code",
  eid: "waiting.how.eid",
  anonymous: "waiting.how.anonymous",
  none: "waiting.how.none",
};

/** What the practitioner calls a waiting client: the name it gave, its pseudonym, or "Client". */
export function waitingName(t, c) {
  return c.name || (c.verification === "anonymous" && c.verified) || t("role.client");
}

/** Draw ``clients`` (WaitingClient list) into ``list``; ``empty`` shows when nobody waits. */
export function renderWaitingList({ list, empty, clients, t }) {
  list.replaceChildren();
  empty.hidden = clients.length > 0;
  for (const c of clients) {
    const name = waitingName(t, c);
    const li = document.createElement("li");
    li.dataset.participantId = c.id;
    li.dataset.verification = c.verification;
    const who = document.createElement("span");
    who.className = "waiting__who";
    const strong = document.createElement("span");
    strong.className = "waiting__name";
    strong.textContent = name;
    const how = document.createElement("span");
    how.className = "waiting__how";
    how.dataset.verification = c.verification;
    how.textContent = t(VERIFICATION_KEYS[c.verification] || "waiting.how.none", { verified: c.verified || "" });
    who.append(strong, how);
    if (c.returning) {
      // Came back through its invite (verified afresh), e.g. after closing the tab.
      li.dataset.returning = "true";
      const back = document.createElement("span");
      back.className = "waiting__returning";
      back.textContent = t("waiting.returning");
      who.append(back);
    }
    li.append(who, waitingButton(t, "admit", c.id, name), waitingButton(t, "deny", c.id, name));
    list.append(li);
  }
}

function waitingButton(t, action, id, name) {
  const btn = document.createElement("button");
  btn.type = "button";
  btn.className = action === "admit" ? "btn btn--primary" : "btn btn--danger-outline";
  btn.dataset.action = action;
  btn.dataset.participantId = id;
  btn.textContent = t(`waiting.${action}`);
  btn.setAttribute("aria-label", t(`waiting.${action}.label`, { name }));
  return btn;
}
