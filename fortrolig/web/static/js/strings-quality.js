// Strings of connection quality and the audio-only fallback (js/quality.js), added to
// i18n.js's table. Every text goes in through textContent, never as HTML.

import { addStrings } from "./i18n.js";

addStrings({
  en: {
    "net.level": "Connection: {level}",
    "net.unknown": "not measured yet",
    "net.good": "good",
    "net.fair": "fair",
    "net.poor": "poor",
    "net.audioonly": "Your connection is too weak for video: the others hear you, but your video is paused. It comes back by itself when the connection allows it.",
    "net.downpoor": "Your connection is weak: the others' video may freeze or blur. Sound goes first.",
    "net.retry": "Try video again",
    "tile.audioonly": "Video paused: weak connection",
  },
  da: {
    "net.level": "Forbindelse: {level}",
    "net.unknown": "ikke målt endnu",
    "net.good": "god",
    "net.fair": "middel",
    "net.poor": "dårlig",
    "net.audioonly": "Din forbindelse er for svag til video: de andre hører dig, men din video er sat på pause. Den kommer selv tilbage, når forbindelsen tillader det.",
    "net.downpoor": "Din forbindelse er svag: de andres video kan fryse eller blive uskarp. Lyden går forrest.",
    "net.retry": "Prøv video igen",
    "tile.audioonly": "Video på pause: svag forbindelse",
  },
});
