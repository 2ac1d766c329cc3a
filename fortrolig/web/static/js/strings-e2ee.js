// Strings of end-to-end encrypted media (js/e2ee-ui.js), added to i18n.js's table. Every text
// goes in through textContent, never as HTML.

import { addStrings } from "./i18n.js";

addStrings({
  en: {
    "e2ee.badge.on": "End-to-end encrypted",
    "e2ee.badge.on.title": "Video, sound and chat are encrypted end to end (AES-256-GCM): only the participants can see and hear them, not the server.",
    "e2ee.badge.recording": "Recording: not end-to-end encrypted",
    "e2ee.badge.recording.title": "While the recording runs, the server receives the video and sound of those who agreed to it (encrypted on the way and in the journal).",
    "e2ee.badge.off": "Not end-to-end encrypted",
    "e2ee.badge.off.title": "The server can see the video and sound of this call; they are still encrypted on their way (AES-256-GCM). Chat stays end-to-end encrypted.",
    "e2ee.unsupported.self": "This browser cannot encrypt the call end to end. The practitioner decides whether the consultation can go on without it (the connection to the server is still encrypted). A current Chrome, Edge, Firefox or Safari can.",
    "e2ee.unsupported.peer": "{name}'s browser cannot encrypt the call end to end. Until you decide, {name} cannot see or hear the others, and they cannot see or hear {name}.",
    "e2ee.unsupported.other": "{name}'s browser cannot encrypt the call end to end; the practitioner decides whether to go on without it.",
    "e2ee.continue": "Go on without end-to-end encryption",
    "e2ee.remove": "Remove {name}",
    "e2ee.off.line": "The practitioner let the consultation go on without end-to-end encryption: the server can see the video and sound (they are still encrypted on the way).",
  },
  da: {
    "e2ee.badge.on": "End-til-end-krypteret",
    "e2ee.badge.on.title": "Video, lyd og chat er krypteret fra ende til ende (AES-256-GCM): kun deltagerne kan se og høre dem, ikke serveren.",
    "e2ee.badge.recording": "Optagelse: ikke end-til-end-krypteret",
    "e2ee.badge.recording.title": "Mens optagelsen kører, modtager serveren video og lyd fra dem, der har sagt ja til den (krypteret undervejs og i journalen).",
    "e2ee.badge.off": "Ikke end-til-end-krypteret",
    "e2ee.badge.off.title": "Serveren kan se video og lyd i dette opkald; de er stadig krypteret undervejs (AES-256-GCM). Chatten er fortsat krypteret fra ende til ende.",
    "e2ee.unsupported.self": "Denne browser kan ikke kryptere opkaldet fra ende til ende. Behandleren afgør, om konsultationen kan fortsætte uden (forbindelsen til serveren er stadig krypteret). En opdateret Chrome, Edge, Firefox eller Safari kan.",
    "e2ee.unsupported.peer": "{name}s browser kan ikke kryptere opkaldet fra ende til ende. Indtil du beslutter dig, kan {name} ikke se eller høre de andre, og de kan ikke se eller høre {name}.",
    "e2ee.unsupported.other": "{name}s browser kan ikke kryptere opkaldet fra ende til ende; behandleren afgør, om I fortsætter uden.",
    "e2ee.continue": "Fortsæt uden end-til-end-kryptering",
    "e2ee.remove": "Fjern {name}",
    "e2ee.off.line": "Behandleren har ladet konsultationen fortsætte uden end-til-end-kryptering: serveren kan se video og lyd (de er stadig krypteret undervejs).",
  },
});
