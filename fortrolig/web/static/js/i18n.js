// Danish and English strings. The language follows navigator.languages (Danish when the
// browser prefers it, English otherwise) and can be switched on the page; the choice is kept
// in localStorage (it is not personal data).

const STRINGS = {
  en: {
    "app.title": "Fortrolig consultation",
    "app.skip": "Skip to content",
    "stage.heading": "Video",
    "ended.room_ended.self": "You ended the consultation for everyone.",
    "lang.switch": "Dansk",
    "lang.switch.label": "Skift til dansk",
    "role.practitioner": "Practitioner",
    "role.client": "Client",
    "prejoin.heading": "Check your camera and microphone",
    "prejoin.camera": "Camera",
    "prejoin.microphone": "Microphone",
    "prejoin.none": "None",
    "prejoin.name": "Your name (optional)",
    "prejoin.join": "Join consultation",
    "prejoin.rejoin": "Rejoin the consultation",
    "state.rejoin": "You are out of the call – rejoin when you are ready",
    "state.away": "{name}: connection lost – waiting for them to come back…",
    "state.waiting": "{name} is waiting to be let in",
    "knock.waiting": "{name} is waiting",
    "knock.dropped": "{name}: the connection was lost",
    "ended.left.client": "You left the consultation. To come back, open the link from your invitation again.",
    "tile.away": "Reconnecting…",
    "prejoin.preview": "Your camera preview",
    "prejoin.nodevices": "No camera or microphone could be opened. You can still join and see and hear the others.",
    "prejoin.denied": "Access to the camera or microphone was refused. Allow it in the browser to be seen and heard.",
    "prejoin.badlink": "This link is incomplete. Open the link from your invitation again.",
    "prejoin.signin": "Log in to enter this consultation room.",
    "precheck.mic": "Microphone level (speak to see it move)",
    "precheck.speakers": "Play a test sound",
    "precheck.speakers.played": "Did you hear three notes? If not, check the volume.",
    "precheck.speakers.none": "This browser cannot play a test sound.",
    "precheck.net.checking": "Checking the connection…",
    "precheck.net.ok": "Connection to the service: good ({ms} ms).",
    "precheck.net.http": "The service cannot be reached. Check your internet connection.",
    "precheck.net.websocket": "The service can be reached, but not the video connection (a firewall or proxy may block WebSockets).",
    "prejoin.signin.link": "Log in",
    "prejoin.roomgone": "This consultation room no longer exists.",
    "prejoin.tokenfailed": "The room could not be opened just now. Try again.",
    "state.prejoin": "Not connected yet",
    "state.connecting": "Connecting…",
    "state.alone": "Waiting for the other participant…",
    "state.in_session": "In session",
    "state.reconnecting": "Connection lost – reconnecting…",
    "state.ended": "The consultation has ended",
    "ended.left": "You left the consultation.",
    "ended.rejoin": "Enter the room again",
    "ended.practice": "Back to the practice",
    "ended.room_ended": "The practitioner ended the consultation.",
    "ended.auth": "This link has expired or was already used. To come back, open the link from your invitation again.",
    "ended.forbidden": "You cannot join this consultation (it is full or no longer exists).",
    "ended.replaced": "You opened the consultation in another window.",
    "ended.failed": "The connection could not be restored.",
    "ended.error": "Something went wrong. Please reload the page.",
    "controls.label": "Call controls",
    "controls.mute": "Mute microphone",
    "controls.unmute": "Unmute microphone",
    "controls.camoff": "Turn camera off",
    "controls.camon": "Turn camera on",
    "controls.leave": "Leave",
    "controls.end": "End for everyone",
    "controls.end.confirm": "End the consultation for everyone?",
    "controls.end.failed": "The consultation could not be ended.",
    "controls.chat": "Chat",
    "tile.you": "You",
    "tile.muted": "Microphone off",
    "tile.camoff": "Camera off",
    "tile.camblocked": "Camera blocked",
    "tile.pin": "Pin",
    "tile.unpin": "Unpin",
    "tile.pin.label": "Pin {name}",
    "tile.unpin.label": "Unpin {name}",
    "moderate.mute": "Mute",
    "moderate.mute.label": "Mute {name}",
    "moderate.remove": "Remove",
    "moderate.remove.label": "Remove {name} from the consultation",
    "moderate.remove.confirm": "Remove {name} from the consultation? They cannot come back with this link.",
    "chat.mutedByPractitioner": "The practitioner turned your microphone off. You can turn it on again.",
    "ended.removed": "The practitioner removed you from the consultation.",
    "tile.micblocked": "Microphone blocked",
    "tile.video": "Video of {name}",
    "participants.heading": "Participants",
    "participants.you": "(you)",
    "waiting.heading": "Waiting room",
    "waiting.empty": "Nobody is waiting.",
    "waiting.admit": "Admit",
    "waiting.deny": "Deny",
    "waiting.admit.label": "Admit {name}",
    "waiting.deny.label": "Deny {name}",
    "waiting.how.email_code": "E-mail verified: {verified}",
    "waiting.how.eid": "Verified with MitID: {verified}",
    "waiting.how.anonymous": "Anonymous, not verified ({verified})",
    "invite.heading": "Your consultation",
    "invite.checking": "Checking your invitation…",
    "invite.code.sent": "We sent a 6-digit code to {email}. It is valid for 10 minutes.",
    "invite.code.label": "Code from the e-mail",
    "invite.code.submit": "Confirm",
    "invite.code.checking": "Checking the code…",
    "invite.code.malformed": "Enter the 6 digits from the e-mail.",
    "invite.code.invalid": "That code is not correct. Attempts left: {n}.",
    "invite.code.exhausted": "Too many wrong codes. Ask your practitioner for a new invitation.",
    "invite.code.expired": "The code has expired. Ask your practitioner for a new invitation.",
    "invite.code.used": "This code was already used. Ask your practitioner for a new invitation.",
    "invite.anon.notice": "You join anonymously: you are not asked who you are, and the practitioner sees only a random name. You may type a name of your choice on the next page.",
    "invite.continue": "Continue to the consultation",
    "invite.verified": "Confirmed. Opening the consultation…",
    "invite.err.invite_used": "This invitation was already used. Ask your practitioner for a new one.",
    "invite.err.invite_expired": "This invitation has expired. Ask your practitioner for a new one.",
    "invite.err.invite_revoked": "This invitation was replaced by a newer one. Use the newest link you received.",
    "invite.err.invite_not_found": "This invitation is not valid. Check that you opened the whole link.",
    "invite.err.invite_malformed": "This link is incomplete. Open the link from your invitation again.",
    "invite.err.verification_unavailable": "Verification with MitID is not available. Contact your practitioner.",
    "invite.eid.redirecting": "Opening MitID…",
    "invite.err.eid_authorization_denied": "The MitID login was cancelled. Open the invitation link again to try again.",
    "invite.err.eid_state_expired": "The MitID login took too long. Open the invitation link again to try again.",
    "invite.err.eid_state_unknown": "This MitID login is no longer valid. Open the invitation link again to try again.",
    "invite.err.eid_acr_insufficient": "The MitID login was not at the level this consultation requires. Open the invitation link again to try again.",
    "invite.err.eid_unavailable": "MitID cannot be reached right now. Try again in a moment with the invitation link.",
    "invite.err.eid_failed": "The MitID login could not be completed. Open the invitation link again to try again.",
    "invite.err.internal_error": "Something went wrong. Open the invitation link again to try again.",
    "invite.err.consultation_ended": "This consultation has ended.",
    "invite.err.email_failed": "We could not send the e-mail. Try again in a moment.",
    "invite.err.verification_not_found": "This verification is no longer valid. Open your invitation link again.",
    "invite.err.other": "Something went wrong. Try again in a moment.",
    "waiting.how.none": "Not verified (direct link)",
    "waiting.returning": "Returning: was in this consultation before",
    "invite.err.invite_throttled": "A code was sent a moment ago. Wait half a minute, then open the link again.",
    "state.lobby": "In the waiting room",
    "lobby.heading": "You are in the waiting room",
    "lobby.text": "The practitioner will let you in shortly. Keep this page open; nobody can see or hear you yet.",
    "ended.denied": "The practitioner did not let you into the consultation.",
    "notes.heading": "Notes",
    "chat.heading": "Chat",
    "chat.input": "Message",
    "chat.send": "Send",
    "chat.e2ee": "Messages are end-to-end encrypted (AES-256-GCM).",
    "chat.waitingkey": "Waiting for the other participant's key…",
    "chat.safety.with": "Safety code with {name}:",
    "chat.safety.help": "Read the code aloud; it must be the same on both screens.",
    "chat.keychanged": "The safety code with {name} changed. Compare it again.",
    "chat.undecryptable": "A message could not be decrypted.",
    "chat.toolong": "The message is too long.",
    "chat.notsent": "The message could not be sent.",
    "chat.you": "You",
    "name.unknown": "Participant",
  },
  da: {
    "app.title": "Fortrolig konsultation",
    "app.skip": "Gå til indhold",
    "stage.heading": "Video",
    "ended.room_ended.self": "Du har afsluttet konsultationen for alle.",
    "lang.switch": "English",
    "lang.switch.label": "Switch to English",
    "role.practitioner": "Behandler",
    "role.client": "Klient",
    "prejoin.heading": "Tjek dit kamera og din mikrofon",
    "prejoin.camera": "Kamera",
    "prejoin.microphone": "Mikrofon",
    "prejoin.none": "Ingen",
    "prejoin.name": "Dit navn (valgfrit)",
    "prejoin.join": "Deltag i konsultationen",
    "prejoin.rejoin": "Deltag igen",
    "state.rejoin": "Du er ude af samtalen – deltag igen, når du er klar",
    "state.away": "{name}: forbindelsen er afbrudt – venter på, at de kommer tilbage…",
    "state.waiting": "{name} venter på at blive lukket ind",
    "knock.waiting": "{name} venter",
    "knock.dropped": "{name}: forbindelsen blev afbrudt",
    "ended.left.client": "Du har forladt konsultationen. Åbn linket fra din invitation igen for at komme tilbage.",
    "tile.away": "Genopretter forbindelsen…",
    "prejoin.preview": "Forhåndsvisning af dit kamera",
    "prejoin.nodevices": "Der kunne ikke åbnes et kamera eller en mikrofon. Du kan stadig deltage og se og høre de andre.",
    "prejoin.denied": "Adgang til kamera eller mikrofon blev afvist. Tillad det i browseren for at blive set og hørt.",
    "prejoin.badlink": "Linket er ufuldstændigt. Åbn linket fra din invitation igen.",
    "prejoin.signin": "Log ind for at gå ind i konsultationsrummet.",
    "precheck.mic": "Mikrofonniveau (tal for at se det bevæge sig)",
    "precheck.speakers": "Afspil en testlyd",
    "precheck.speakers.played": "Hørte du tre toner? Hvis ikke, så tjek lydstyrken.",
    "precheck.speakers.none": "Denne browser kan ikke afspille en testlyd.",
    "precheck.net.checking": "Tjekker forbindelsen…",
    "precheck.net.ok": "Forbindelse til tjenesten: god ({ms} ms).",
    "precheck.net.http": "Tjenesten kan ikke nås. Tjek din internetforbindelse.",
    "precheck.net.websocket": "Tjenesten kan nås, men ikke videoforbindelsen (en firewall eller proxy blokerer måske WebSockets).",
    "prejoin.signin.link": "Log ind",
    "prejoin.roomgone": "Konsultationsrummet findes ikke længere.",
    "prejoin.tokenfailed": "Rummet kunne ikke åbnes lige nu. Prøv igen.",
    "state.prejoin": "Ikke forbundet endnu",
    "state.connecting": "Forbinder…",
    "state.alone": "Venter på den anden deltager…",
    "state.in_session": "I samtale",
    "state.reconnecting": "Forbindelsen blev afbrudt – forbinder igen…",
    "state.ended": "Konsultationen er slut",
    "ended.left": "Du har forladt konsultationen.",
    "ended.rejoin": "Gå ind i rummet igen",
    "ended.practice": "Tilbage til praksis",
    "ended.room_ended": "Behandleren har afsluttet konsultationen.",
    "ended.auth": "Linket er udløbet eller allerede brugt. Åbn linket fra din invitation igen for at komme tilbage.",
    "ended.forbidden": "Du kan ikke deltage i denne konsultation (den er fuld eller findes ikke længere).",
    "ended.replaced": "Du har åbnet konsultationen i et andet vindue.",
    "ended.failed": "Forbindelsen kunne ikke genoprettes.",
    "ended.error": "Noget gik galt. Genindlæs siden.",
    "controls.label": "Opkaldsknapper",
    "controls.mute": "Slå mikrofonen fra",
    "controls.unmute": "Slå mikrofonen til",
    "controls.camoff": "Slå kameraet fra",
    "controls.camon": "Slå kameraet til",
    "controls.leave": "Forlad",
    "controls.end": "Afslut for alle",
    "controls.end.confirm": "Afslut konsultationen for alle?",
    "controls.end.failed": "Konsultationen kunne ikke afsluttes.",
    "controls.chat": "Chat",
    "tile.you": "Dig",
    "tile.muted": "Mikrofon slået fra",
    "tile.camoff": "Kamera slået fra",
    "tile.camblocked": "Kamera blokeret",
    "tile.pin": "Fastgør",
    "tile.unpin": "Frigør",
    "tile.pin.label": "Fastgør {name}",
    "tile.unpin.label": "Frigør {name}",
    "moderate.mute": "Slå lyd fra",
    "moderate.mute.label": "Slå lyd fra for {name}",
    "moderate.remove": "Fjern",
    "moderate.remove.label": "Fjern {name} fra konsultationen",
    "moderate.remove.confirm": "Fjern {name} fra konsultationen? Vedkommende kan ikke komme tilbage med dette link.",
    "chat.mutedByPractitioner": "Behandleren slog din mikrofon fra. Du kan slå den til igen.",
    "ended.removed": "Behandleren har fjernet dig fra konsultationen.",
    "tile.micblocked": "Mikrofon blokeret",
    "tile.video": "Video af {name}",
    "participants.heading": "Deltagere",
    "participants.you": "(dig)",
    "waiting.heading": "Venteværelse",
    "waiting.empty": "Ingen venter.",
    "waiting.admit": "Luk ind",
    "waiting.deny": "Afvis",
    "waiting.admit.label": "Luk {name} ind",
    "waiting.deny.label": "Afvis {name}",
    "waiting.how.email_code": "E-mail bekræftet: {verified}",
    "waiting.how.eid": "Bekræftet med MitID: {verified}",
    "waiting.how.anonymous": "Anonym, ikke bekræftet ({verified})",
    "invite.heading": "Din konsultation",
    "invite.checking": "Tjekker din invitation…",
    "invite.code.sent": "Vi har sendt en 6-cifret kode til {email}. Den gælder i 10 minutter.",
    "invite.code.label": "Kode fra e-mailen",
    "invite.code.submit": "Bekræft",
    "invite.code.checking": "Tjekker koden…",
    "invite.code.malformed": "Skriv de 6 cifre fra e-mailen.",
    "invite.code.invalid": "Koden er ikke korrekt. Forsøg tilbage: {n}.",
    "invite.code.exhausted": "For mange forkerte koder. Bed din behandler om en ny invitation.",
    "invite.code.expired": "Koden er udløbet. Bed din behandler om en ny invitation.",
    "invite.code.used": "Koden er allerede brugt. Bed din behandler om en ny invitation.",
    "invite.anon.notice": "Du deltager anonymt: du bliver ikke spurgt, hvem du er, og behandleren ser kun et tilfældigt navn. Du kan skrive et navn efter eget valg på næste side.",
    "invite.continue": "Fortsæt til konsultationen",
    "invite.verified": "Bekræftet. Åbner konsultationen…",
    "invite.err.invite_used": "Invitationen er allerede brugt. Bed din behandler om en ny.",
    "invite.err.invite_expired": "Invitationen er udløbet. Bed din behandler om en ny.",
    "invite.err.invite_revoked": "Invitationen er erstattet af en nyere. Brug det nyeste link, du har fået.",
    "invite.err.invite_not_found": "Invitationen er ikke gyldig. Tjek, at du har åbnet hele linket.",
    "invite.err.invite_malformed": "Linket er ufuldstændigt. Åbn linket fra din invitation igen.",
    "invite.err.verification_unavailable": "Bekræftelse med MitID er ikke tilgængelig. Kontakt din behandler.",
    "invite.eid.redirecting": "Åbner MitID…",
    "invite.err.eid_authorization_denied": "MitID-login blev afbrudt. Åbn invitationslinket igen for at prøve igen.",
    "invite.err.eid_state_expired": "MitID-login udløb. Åbn invitationslinket igen for at prøve igen.",
    "invite.err.eid_state_unknown": "Dette MitID-login er ikke længere gyldigt. Åbn invitationslinket igen for at prøve igen.",
    "invite.err.eid_acr_insufficient": "MitID-login var ikke på det sikringsniveau, konsultationen kræver. Åbn invitationslinket igen for at prøve igen.",
    "invite.err.eid_unavailable": "MitID kan ikke nås lige nu. Prøv igen om lidt med invitationslinket.",
    "invite.err.eid_failed": "MitID-login kunne ikke gennemføres. Åbn invitationslinket igen for at prøve igen.",
    "invite.err.internal_error": "Noget gik galt. Åbn invitationslinket igen for at prøve igen.",
    "invite.err.consultation_ended": "Konsultationen er slut.",
    "invite.err.email_failed": "Vi kunne ikke sende e-mailen. Prøv igen om lidt.",
    "invite.err.verification_not_found": "Bekræftelsen er ikke længere gyldig. Åbn dit invitationslink igen.",
    "invite.err.other": "Noget gik galt. Prøv igen om lidt.",
    "waiting.how.none": "Ikke bekræftet (direkte link)",
    "waiting.returning": "Vender tilbage: har været med i konsultationen før",
    "invite.err.invite_throttled": "Der blev lige sendt en kode. Vent et halvt minut, og åbn så linket igen.",
    "state.lobby": "I venteværelset",
    "lobby.heading": "Du er i venteværelset",
    "lobby.text": "Behandleren lukker dig ind om lidt. Hold siden åben; ingen kan se eller høre dig endnu.",
    "ended.denied": "Behandleren lukkede dig ikke ind i konsultationen.",
    "notes.heading": "Notater",
    "chat.heading": "Chat",
    "chat.input": "Besked",
    "chat.send": "Send",
    "chat.e2ee": "Beskeder er krypteret fra ende til ende (AES-256-GCM).",
    "chat.waitingkey": "Venter på den anden deltagers nøgle…",
    "chat.safety.with": "Sikkerhedskode med {name}:",
    "chat.safety.help": "Læs koden højt; den skal være ens på begge skærme.",
    "chat.keychanged": "Sikkerhedskoden med {name} er ændret. Sammenlign den igen.",
    "chat.undecryptable": "En besked kunne ikke dekrypteres.",
    "chat.toolong": "Beskeden er for lang.",
    "chat.notsent": "Beskeden kunne ikke sendes.",
    "chat.you": "Dig",
    "name.unknown": "Deltager",
  },
};

const STORAGE_KEY = "fortrolig.lang";

/** The language to start with: a stored choice, else the first of navigator.languages we speak. */
export function initialLanguage() {
  try {
    const stored = localStorage.getItem(STORAGE_KEY);
    if (stored && stored in STRINGS) return stored;
  } catch {
    // storage may be disabled; fall through
  }
  for (const tag of navigator.languages || [navigator.language || "en"]) {
    const base = String(tag).toLowerCase().split("-")[0];
    if (base === "da" || base === "nb" || base === "no" || base === "nn") return "da";
    if (base === "en") return "en";
  }
  return "en";
}

let current = "en";

export function setLanguage(lang) {
  current = lang in STRINGS ? lang : "en";
  document.documentElement.lang = current;
  try {
    localStorage.setItem(STORAGE_KEY, current);
  } catch {
    // not persisted; fine
  }
}

export function language() {
  return current;
}

/** A time of day as hours and minutes, in the page's language (chat lines, the consent question). */
export function clockTime(date) {
  return date.toLocaleTimeString(language(), { hour: "2-digit", minute: "2-digit" });
}

/** The string for ``key`` with {placeholders} filled in (textContent only, never HTML). */
export function t(key, vars = {}) {
  const text = STRINGS[current][key] ?? STRINGS.en[key] ?? key;
  return text.replace(/\{(\w+)\}/g, (_, name) => (name in vars ? String(vars[name]) : ""));
}

/** Fill every [data-i18n] (text), [data-i18n-label] (aria-label) and [data-i18n-placeholder]. */
export function translatePage(root = document) {
  for (const el of root.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
  for (const el of root.querySelectorAll("[data-i18n-label]")) {
    el.setAttribute("aria-label", t(el.dataset.i18nLabel));
  }
  for (const el of root.querySelectorAll("[data-i18n-placeholder]")) {
    el.setAttribute("placeholder", t(el.dataset.i18nPlaceholder));
  }
  document.title = t("app.title");
}

/** Add a page's own strings ({en: {...}, da: {...}}); existing keys are kept. */
export function addStrings(table) {
  for (const [lang, strings] of Object.entries(table)) {
    if (lang in STRINGS) STRINGS[lang] = { ...strings, ...STRINGS[lang] };
  }
}
