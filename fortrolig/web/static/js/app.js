// The room page: one page for both roles (the role comes from the link's fragment).
// Wires the pre-join preview, the call (call.js), the encrypted chat (chat-crypto.js) and the
// strings (i18n.js) to the DOM. All text goes in through textContent, never as HTML.

import { Call } from "./call.js";
import { ChatCrypto } from "./chat-crypto.js";
import { appendChatLine, appendSystemLine, renderSafetyCodes as renderCodes } from "./chat-log.js";
import { exposeDiagnostics } from "./diagnostics.js";
import { E2eeUi } from "./e2ee-ui.js";
import { e2eeAvailable, e2eeSupport, MediaE2ee } from "./media-e2ee.js";
import {
  listDevices,
  openCamera,
  openMedia,
  openMicrophone,
  permissions,
  stopTrack,
  watchPermissions,
} from "./devices.js";
import { initialLanguage, language, setLanguage, t, translatePage } from "./i18n.js";
import { consultationOfRoom, NotesPanel } from "./notes.js";
import { Knock } from "./knock.js";
import { PreCheck } from "./precheck.js";
import { QualityUi } from "./quality.js";
import { renderWaitingList, waitingName as nameOfWaiting } from "./waiting-list.js";
import { RecordingUi } from "./recording.js";
import { LocalScreen } from "./screen-share.js";
import { displayName as tileName, renderFlags as flagsOf, Tiles } from "./tiles.js";
import { api, keepAlive, onSignedOut, restore, signedIn } from "./session.js";

const $ = (id) => document.getElementById(id);
const CHAT_MAX_BYTES_DEFAULT = 4096;

const ui = {
  state: "prejoin",
  endReason: null,
  role: null,
  name: null, // the name typed before joining (kept with the resume token for a reload)
  roomId: null,
  joinToken: null,
  cameraId: "",
  micId: "",
  audio: null,
  video: null,
  hadVideo: false,
  hadAudio: false,
  blocked: { audio: false, video: false }, // the browser refused the device (not just off)
  chatMaxBytes: CHAT_MAX_BYTES_DEFAULT,
  stateLog: [],
  tiles: null, // the video tiles and shared screens (tiles.js)
  waitingClients: [], // practitioners: who waits to be admitted (the server's `waiting_room`)
  chatSeq: 0,
  call: null,
  chat: null,
  notes: null, // the practitioner's notes panel (notes.js), when this tab is logged in
  recording: null, // recording with consent (recording.js)
  screen: null, // this page's screen share (screen-share.js)
  knock: new Knock(), // practitioners: a client arrived or dropped (sound, title, notification)
  precheck: null, // the check before joining (precheck.js)
  net: null, // its connection result
};
const BASE_TITLE = document.title;

// -- start-up -----------------------------------------------------------------------------------

function readLink() {
  const params = new URLSearchParams(location.hash.slice(1));
  const parts = location.pathname.split("/").filter(Boolean);
  ui.roomId = parts[0] === "room" && parts[1] ? decodeURIComponent(parts[1]) : null;
  const role = params.get("role");
  ui.joinToken = params.get("token");
  const stored = readStored();
  ui.role = role === "practitioner" || role === "client" ? role : stored?.role ?? null;
  // Keep tokens out of the address bar, history and any screenshot of it.
  if (location.hash) history.replaceState(null, "", location.pathname + location.search);
}

// A reload of the tab resumes the same participant: the join token is single use, so the
// newest resume token is kept in this tab's sessionStorage (gone when the tab closes).
function storageKey() {
  return `fortrolig.resume.${ui.roomId}`;
}

function readStored() {
  try {
    const raw = sessionStorage.getItem(storageKey());
    return raw ? JSON.parse(raw) : null;
  } catch {
    return null;
  }
}

function storeResume(token) {
  try {
    if (token) sessionStorage.setItem(storageKey(), JSON.stringify({ token, role: ui.role, name: ui.name }));
    else if (ui.state === "ended") sessionStorage.removeItem(storageKey());
  } catch {
    // storage disabled: a reload then needs a new link
  }
}

async function main() {
  ui.tiles = new Tiles({ container: $("tiles"), t });
  const notice = { root: $("net-notice"), text: $("net-notice-text"), retry: $("net-retry"), self: $("self-quality") };
  ui.quality = new QualityUi({ call: () => ui.call, tiles: ui.tiles, t, notice, onChange: render });
  setLanguage(initialLanguage());
  readLink();
  translatePage();
  bindControls();
  // Said before joining: the practitioner decides whether the consultation goes on without it.
  $("e2ee-unsupported").hidden = e2eeSupport() !== null;
  // ... and where the API is there but its worker does not start (a policy the browser enforces).
  e2eeAvailable().then((api) => ($("e2ee-unsupported").hidden = api !== null));
  ui.recording = new RecordingUi({
    call: () => ui.call,
    panel: () => ui.notes,
    role: () => ui.role,
    roomState: () => ui.state,
    signedIn,
    displayName,
    onConsent: (accept) => ui.e2ee?.onConsent(accept),
  });
  // A practitioner's tab gets its login from the browser's session cookie (another tab logged
  // in): it then needs no join token in the link; it asks for one itself when joining.
  if (ui.role === "practitioner") await restore();
  render();
  const resume = readStored()?.token ?? null;
  if (!ui.roomId || (!ui.joinToken && !resume && !ownToken())) {
    if (ui.roomId && ui.role === "practitioner") {
      showPrejoinMessage("prejoin.signin");
      $("prejoin-signin").href = `/login?next=${encodeURIComponent(location.pathname)}`;
      $("prejoin-signin").hidden = false;
      $("join-btn").hidden = true;
      return;
    }
    showPrejoinMessage("prejoin.badlink");
    return;
  }
  ui.resumeToken = ui.joinToken ? null : resume;
  if (ui.resumeToken) {
    // This tab was in the consultation (a reload, a crash): its place is held for a while.
    $("join-btn").dataset.i18n = "prejoin.rejoin";
    $("join-btn").textContent = t("prejoin.rejoin");
    $("name-input").value = readStored()?.name || "";
    render();
  }
  ui.precheck = new PreCheck({ meter: $("mic-level") });
  checkConnection().catch((e) => console.warn(e));
  await startPreview();
  watchPermissions((kind, state) => onPermission(kind, state).catch((e) => console.warn(e)));
  $("join-btn").disabled = false;
  $("join-btn").focus();
}

// -- pre-join: preview and devices --------------------------------------------------------------

async function startPreview() {
  const { audio, video, denied } = await openMedia(ui.cameraId, ui.micId);
  setLocal(audio, video);
  ui.hadVideo = Boolean(video);
  ui.hadAudio = Boolean(audio);
  const allowed = await permissions();
  ui.blocked = {
    video: !video && (allowed.video === "denied" || denied),
    audio: !audio && (allowed.audio === "denied" || denied),
  };
  await fillDeviceLists();
  if (ui.blocked.video || ui.blocked.audio) showPrejoinMessage("prejoin.denied");
  else if (!audio && !video) showPrejoinMessage("prejoin.nodevices");
}

function wsUrl() {
  return `${location.protocol === "https:" ? "wss:" : "ws:"}//${location.host}/ws`;
}

async function checkConnection() {
  const el = $("net-check");
  ui.net = await ui.precheck.connection(wsUrl());
  const key = ui.net.ok ? "precheck.net.ok" : `precheck.net.${ui.net.step}`;
  el.dataset.i18n = key;
  el.dataset.ok = String(ui.net.ok);
  el.textContent = t(key, { ms: ui.net.ms ?? "" });
}

async function testSpeakers() {
  const played = await ui.precheck.speakerTest().catch(() => false);
  $("speaker-msg").dataset.i18n = played ? "precheck.speakers.played" : "precheck.speakers.none";
  $("speaker-msg").textContent = t($("speaker-msg").dataset.i18n);
}

// The user allowed the camera or microphone in the browser (after refusing it): open it and
// use it at once, in the preview or in the call, without a reload. A refusal marks it blocked.
async function onPermission(kind, state) {
  if (state !== "granted") {
    ui.blocked[kind] = state === "denied" && !(kind === "video" ? ui.video : ui.audio);
    ui.call?.setBlocked(ui.blocked);
    render();
    return;
  }
  if (kind === "video" && !ui.video && ui.cameraId !== null) {
    const track = await openCamera(ui.cameraId);
    if (!track) return;
    setLocal(ui.audio, track);
    ui.hadVideo = true;
    ui.blocked.video = false;
    if (ui.call) await ui.call.replaceVideo(track);
  } else if (kind === "audio" && !ui.audio && ui.micId !== null) {
    const track = await openMicrophone(ui.micId);
    if (!track) return;
    setLocal(track, ui.video);
    ui.hadAudio = true;
    ui.blocked.audio = false;
    if (ui.call) {
      await ui.call.replaceAudio(track);
      ui.call.setAudioEnabled(true);
    }
  } else {
    return;
  }
  ui.call?.setBlocked(ui.blocked);
  await fillDeviceLists();
  if (!ui.blocked.video && !ui.blocked.audio) $("prejoin-msg").hidden = true;
  render();
}

function setLocal(audio, video) {
  if (ui.state === "prejoin" && audio !== ui.audio) ui.precheck?.watch(audio);
  ui.audio = audio;
  ui.video = video;
  const stream = new MediaStream([audio, video].filter(Boolean));
  for (const el of [$("preview"), $("self-video")]) el.srcObject = video ? stream : null;
  $("preview-off").hidden = Boolean(video);
  $("self-off").hidden = Boolean(video);
}

async function fillDeviceLists() {
  const { cameras, microphones } = await listDevices();
  fillSelect($("camera-select"), cameras, ui.video);
  fillSelect($("mic-select"), microphones, ui.audio);
}

function fillSelect(select, devices, track) {
  const current = track?.getSettings?.().deviceId ?? "";
  select.replaceChildren();
  for (const d of devices) {
    const opt = new Option(d.label, d.deviceId, false, d.deviceId === current);
    select.append(opt);
  }
  const none = new Option(t("prejoin.none"), "none", false, !track);
  none.dataset.i18n = "prejoin.none";
  select.append(none);
  select.disabled = devices.length === 0;
}

async function onDeviceChange(kind) {
  const value = $(kind === "video" ? "camera-select" : "mic-select").value;
  if (kind === "video") {
    stopTrack(ui.video);
    ui.cameraId = value === "none" ? null : value;
    const track = ui.cameraId === null ? null : await openCamera(ui.cameraId);
    setLocal(ui.audio, track);
    ui.hadVideo = Boolean(track);
  } else {
    stopTrack(ui.audio);
    ui.micId = value === "none" ? null : value;
    const track = ui.micId === null ? null : await openMicrophone(ui.micId);
    setLocal(track, ui.video);
    ui.hadAudio = Boolean(track);
  }
}

function showPrejoinMessage(key) {
  const el = $("prejoin-msg");
  el.textContent = t(key);
  el.dataset.i18n = key;
  el.hidden = false;
}

// -- joining -----------------------------------------------------------------------------------

// A signed-in practitioner enters any of their rooms without a link of its own: the page asks
// for a fresh single-use join token when it joins (and again after the session ended).
function ownToken() {
  return ui.role === "practitioner" && signedIn();
}

async function mintToken(name) {
  const body = { role: "practitioner" };
  if (name) body.name = name;
  const res = await api(`/api/v1/rooms/${encodeURIComponent(ui.roomId)}/tokens`, { method: "POST", body });
  if (res.ok) return res.data.token;
  const code = res.error?.code || "other";
  showPrejoinMessage(code === "room_not_found" ? "prejoin.roomgone" : res.status === 401 ? "prejoin.signin" : "prejoin.tokenfailed");
  return null;
}

async function join() {
  $("join-btn").disabled = true;
  ui.precheck?.watch(null); // the meter is for before joining
  if (ui.role === "practitioner") ui.knock.prime(); // a user gesture: sound and permission
  const name = $("name-input").value.trim().slice(0, 64) || null;
  ui.name = name;
  if (!ui.joinToken && !ui.resumeToken && ownToken()) {
    ui.joinToken = await mintToken(name);
    if (!ui.joinToken) {
      $("join-btn").disabled = false;
      return;
    }
  }
  // Media end to end encrypted where the browser can (media-e2ee.js); the keys travel over
  // the chat's pairwise keys, so the safety codes cover them.
  ui.screen = new LocalScreen({ call: () => ui.call, onChange: () => render(), onError: (key) => addSystemLine(key) });
  ui.media = new MediaE2ee({ sendKey: (ids, index, raw) => ui.chat.sendMediaKey(ids, index, raw) });
  await ui.media.init();
  ui.chat = new ChatCrypto(
    {
      send: (text) => ui.call?.sendChat(text, nextChatId()),
      onMessage: (m) => addChatLine(m),
      onPeerKey: (k) => onPeerKey(k),
      onUndecryptable: (m) => addSystemLine("chat.undecryptable", {}, m.ts),
      onPeerReady: (p) => {
        ui.e2ee.onPeerReady(p);
        ui.media.peerReady(p.peerId); // not awaited: a rekey may be waiting to switch
      },
      onMediaKey: (k) => ui.media.peerKey(k.fromId, k.index, k.raw),
      onControl: (c) => ui.e2ee.onControl(c),
    },
    { mediaCapable: ui.media.supported },
  );
  await ui.chat.init();
  ui.e2ee = new E2eeUi({
    media: ui.media,
    call: () => ui.call,
    chat: () => ui.chat,
    displayName,
    systemLine: (key) => addSystemLine(key),
    sendLine: (text) => ui.call?.sendChat(text, nextChatId()),
  });
  ui.call = new Call({
    wsUrl: wsUrl(),
    joinToken: ui.joinToken,
    resumeToken: ui.resumeToken,
    name,
    hooks: callHooks(),
    e2ee: ui.media,
  });
  ui.joinToken = null;
  ui.resumeToken = null;
  $("prejoin").hidden = true;
  $("room").hidden = false;
  // A blocked device still gets its m-line: allowing it later is a replaceTrack, no re-offer.
  ui.call.setBlocked(ui.blocked);
  ui.call.start({
    audio: ui.audio,
    video: ui.video,
    hasAudio: ui.hadAudio || ui.blocked.audio,
    hasVideo: ui.hadVideo || ui.blocked.video,
  });
  render();
}

function callHooks() {
  return {
    onState: (state, detail) => {
      ui.state = state;
      ui.stateLog.push(state);
      if (ui.stateLog.length > 50) ui.stateLog.shift();
      if (state === "ended") {
        onEnded(detail);
        ui.recording.onEnded();
      }
      render();
    },
    onWelcome: (w) => {
      ui.role = w.role;
      ui.chat.setSelf(w.participant_id);
      if (typeof w.limits?.chat_max_bytes === "number") ui.chatMaxBytes = w.limits.chat_max_bytes;
      render();
    },
    onRoster: (list) => {
      for (const id of [...ui.tiles.keys()]) if (!list.some((p) => p.id === id)) ui.tiles.remove(id);
      for (const p of list) ui.tiles.upsert(p);
      ui.tiles.renderScreens(ui.call);
      for (const p of list) ui.e2ee.expect(p.id);
      renderParticipants();
      ui.call.sendChat(ui.chat.announcement(), nextChatId());
      ui.recording.onJoined();
    },
    onParticipantJoined: (p) => {
      ui.media.peerJoined(); // one ratchet step: what was sent before stays unreadable to them
      ui.e2ee.expect(p.id);
      ui.tiles.upsert(p);
      renderParticipants();
      ui.call.sendChat(ui.chat.announcement(), nextChatId()); // re-announce for the newcomer
    },
    onParticipantAway: (id) => {
      const tile = ui.tiles.get(id);
      if (tile) {
        tile.info = { ...tile.info, away: true };
        tile.video.srcObject = null;
        tile.hasVideo = false;
        ui.tiles.renderTile(tile);
      }
      render();
      renderSafetyCodes();
      ui.tiles.renderScreens(ui.call);
      if (ui.role === "practitioner") ui.knock.dropped(t("knock.dropped", { name: displayName(tile?.info) }));
      // Their next page has new chat keys; it announces them when it is back.
      ui.chat.forget(id).catch((err) => console.warn("chat rekey failed", err));
      ui.media.peerGone(id);
      ui.e2ee.onPeerGone(id);
    },
    onParticipantLeft: (id) => {
      ui.tiles.remove(id);
      ui.tiles.screens.forget(id);
      ui.tiles.renderScreens(ui.call);
      renderParticipants();
      renderSafetyCodes();
      ui.chat.forget(id).catch((err) => console.warn("chat rekey failed", err));
      ui.media.peerGone(id); // a new media key, which the one who left never gets
      ui.e2ee.onPeerGone(id);
    },
    onParticipantUpdated: (p) => {
      ui.tiles.upsert(p);
      ui.tiles.renderScreens(ui.call);
      renderParticipants();
    },
    onRemoteTrack: (id, stream) => ui.tiles.attach(id, stream),
    onRemoteScreen: (id, stream) => {
      ui.tiles.screens.setStream(id, stream);
      ui.tiles.renderScreens(ui.call);
    },
    onScreenShare: (allowed) => {
      // Restricted to practitioners while this client shares: its share ends here too.
      if (ui.screen.sharing && !ui.call.mayShareScreen) {
        ui.screen.stop();
        addSystemLine("screen.restricted");
      }
      render();
    },
    onChat: (msg) => ui.chat.receive(msg),
    onRecording: (msg) => {
      ui.recording.onRecording(msg);
      ui.e2ee.onRecording(msg);
    },
    onError: (msg) => {
      if (ui.recording.onError(msg)) return;
      if (msg.code === "screen_share_not_allowed") {
        ui.screen.stop();
        addSystemLine("screen.restricted");
        return;
      }
      if (msg.ref === "chat") addSystemLine(msg.code === "chat_too_long" ? "chat.toolong" : "chat.notsent");
    },
    onResumeToken: (token) => storeResume(token),
    onMuted: () => {
      addSystemLine("chat.mutedByPractitioner");
      render();
    },
    onWaitingClients: (clients) => {
      ui.waitingClients = clients;
      renderWaitingRoom();
      ui.knock.waiting(clients, waitingName, (name) => t("knock.waiting", { name }));
      render();
    },
  };
}

function nextChatId() {
  ui.chatSeq += 1;
  return `c-${ui.chatSeq}`;
}

function onEnded(reason) {
  ui.endReason = reason || "error";
  stopTrack(ui.audio);
  stopTrack(ui.video);
  for (const id of [...ui.tiles.keys()]) ui.tiles.remove(id);
  $("self-video").srcObject = null;
  storeResume(null);
  $("room").hidden = true;
  $("prejoin").hidden = true;
  $("ended").hidden = false;
  if (ui.notes) $("ended").append($("notes-panel")); // notes stay usable after the end
  $("ended-heading").focus?.();
}

// -- tiles (tiles.js) ---------------------------------------------------------------------------

const displayName = (p) => tileName(t, p);
const renderFlags = (el, ...rest) => flagsOf(t, el, ...rest);
// Who is speaking: the audio level each received track carries (getStats), twice a second.
setInterval(() => ui.tiles?.markSpeakers(ui.call).catch(() => {}), 500);

// -- practitioner panel ------------------------------------------------------------------------

function renderParticipants() {
  const list = $("participants");
  list.replaceChildren();
  if (!ui.call) return;
  const me = document.createElement("li");
  me.textContent = `${displayName({ role: ui.role, name: ui.call.name })} ${t("participants.you")}`;
  list.append(me);
  for (const p of ui.call.participants.values()) {
    const li = document.createElement("li");
    li.dataset.participantId = p.id;
    const flags = document.createElement("span");
    flags.className = "flags";
    renderFlags(flags, p.audio, p.video, Boolean(p.away), p);
    li.append(`${displayName(p)} (${t(p.role === "practitioner" ? "role.practitioner" : "role.client")}) `, flags);
    if (ui.role === "practitioner") {
      // Moderation: turn someone's microphone off (they turn it on again), or remove them.
      const actions = document.createElement("span");
      actions.className = "participants__actions";
      if (p.audio && !p.away) actions.append(moderationButton("mute", p));
      actions.append(moderationButton("remove", p));
      li.append(actions);
    }
    list.append(li);
  }
}

function moderationButton(action, p) {
  const btn = document.createElement("button");
  btn.type = "button";
  btn.className = action === "mute" ? "btn btn--small" : "btn btn--small btn--danger-outline";
  btn.dataset.action = action;
  btn.dataset.participantId = p.id;
  btn.textContent = t(`moderate.${action}`);
  btn.setAttribute("aria-label", t(`moderate.${action}.label`, { name: displayName(p) }));
  btn.addEventListener("click", () => {
    if (action === "remove" && !confirm(t("moderate.remove.confirm", { name: displayName(p) }))) return;
    btn.disabled = true;
    if (!ui.call?.moderate(action, p.id)) btn.disabled = false;
  });
  return btn;
}

// The waiting room (waiting-list.js): who waits, how each proved who they are, admit / deny.
const waitingName = (c) => nameOfWaiting(t, c);

function renderWaitingRoom() {
  const clients = ui.state === "ended" ? [] : ui.waitingClients;
  renderWaitingList({ list: $("waiting-list"), empty: $("waiting-empty"), clients, t });
}

function onWaitingClick(event) {
  const btn = event.target.closest("button[data-action]");
  if (!btn || !ui.call) return;
  btn.disabled = true; // one click, one message; the server's next waiting_room redraws
  const id = btn.dataset.participantId;
  const sent = btn.dataset.action === "admit" ? ui.call.admit(id) : ui.call.deny(id);
  if (!sent) btn.disabled = false;
}

// The journal of this consultation's client: the server knows the room's consultation and the
// journal client it belongs to, so the panel opens that journal (the same one for every
// consultation of the client); a room without a consultation writes notes without one.
function mountNotes() {
  keepAlive();
  onSignedOut(() => render());
  const contextKey = `room.${ui.roomId}`;
  ui.notes = new NotesPanel($("notes-root"), { contextKey });
  consultationOfRoom(ui.roomId)
    .then((c) =>
      ui.notes.setContext({
        consultationId: c?.consultation_id ?? null,
        clientId: c?.journal_client_id ?? null,
        contextKey,
        suggestedName: c?.client_name ?? null,
        suggestedContact: c?.client_email ?? null,
      }),
    )
    .catch((err) => console.warn("notes failed to load", err));
}

function endForEveryone() {
  if (!ui.call?.isJoined()) return;
  if (!confirm(t("controls.end.confirm"))) return;
  // The server answers every participant (this page too) with `bye room_ended`.
  if (ui.call.send({ type: "end_room" })) ui.endedByMe = true;
  else addSystemLine("controls.end.failed");
}

// -- chat ----------------------------------------------------------------------------------------

async function sendChat(event) {
  event.preventDefault();
  const input = $("chat-input");
  const text = input.value.trim();
  if (!text || !ui.call?.isJoined()) return;
  const envelope = await ui.chat.encrypt(text);
  if (new TextEncoder().encode(envelope).length > ui.chatMaxBytes) {
    addSystemLine("chat.toolong");
    return;
  }
  if (ui.call.sendChat(envelope, nextChatId())) input.value = "";
  else addSystemLine("chat.notsent");
}

function addChatLine({ fromId, text, ts }) {
  const mine = fromId === ui.call?.selfId;
  const who = mine ? t("chat.you") : displayName(ui.call?.participants.get(fromId) ?? ui.tiles.get(fromId)?.info);
  appendChatLine($("chat-log"), { who, mine, ts, text });
}

function addSystemLine(key, vars = {}) {
  appendSystemLine($("chat-log"), t(key, vars));
}

function onPeerKey({ peerId, changed }) {
  if (changed) addSystemLine("chat.keychanged", { name: displayName(ui.call?.participants.get(peerId)) });
  renderSafetyCodes();
}

function renderSafetyCodes() {
  const participants = ui.call?.participants ?? new Map();
  renderCodes($("safety-codes"), ui.chat?.safetyCodes() ?? {}, (id) => participants.get(id), displayName);
}

// -- controls -------------------------------------------------------------------------------

function bindControls() {
  $("lang-btn").addEventListener("click", () => {
    setLanguage(language() === "da" ? "en" : "da");
    translatePage();
    render();
  });
  $("prejoin-form").addEventListener("submit", (e) => {
    e.preventDefault();
    join().catch((err) => {
      console.error(err);
      ui.call?.end("error");
    });
  });
  $("speaker-test").addEventListener("click", () => testSpeakers());
  $("ended-rejoin").addEventListener("click", () => {
    history.replaceState(null, "", `${location.pathname}#role=practitioner`);
    location.reload();
  });
  $("camera-select").addEventListener("change", () => onDeviceChange("video"));
  $("mic-select").addEventListener("change", () => onDeviceChange("audio"));
  $("mic-btn").addEventListener("click", toggleMic);
  $("cam-btn").addEventListener("click", () => toggleCamera().catch((e) => console.warn(e)));
  $("screen-btn").addEventListener("click", () => ui.screen?.toggle().catch((e) => console.warn(e)));
  $("screen-policy").addEventListener("change", (e) => ui.call?.setScreenShare(e.target.checked ? "everyone" : "practitioners"));
  $("leave-btn").addEventListener("click", () => ui.call?.leave());
  $("end-btn").addEventListener("click", endForEveryone);
  $("waiting-list").addEventListener("click", onWaitingClick);
  $("chat-form").addEventListener("submit", (e) => sendChat(e).catch((err) => console.warn(err)));
  $("chat-input").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      $("chat-form").requestSubmit();
    }
  });
  // On a phone the open chat lies between the top bars and the control bar, never under it.
  const controls = document.querySelector(".controls");
  const placeChat = () =>
    document.documentElement.style.setProperty("--controls-height", `${Math.ceil(controls.getBoundingClientRect().height)}px`);
  if (typeof ResizeObserver === "function") new ResizeObserver(placeChat).observe(controls);
  addEventListener("resize", placeChat);
  $("chat-btn").addEventListener("click", () => {
    placeChat();
    const open = document.body.classList.toggle("chat-open");
    $("chat-btn").setAttribute("aria-expanded", String(open));
    if (open) $("chat-input").focus();
  });
  // Reloading or closing the tab does not leave: the browser drops the connection, the server
  // holds this participant's place for its rejoin grace, and the resume token kept in this
  // tab's sessionStorage brings it back after a reload. Only Leave gives the place up.
}

function toggleMic() {
  if (!ui.call || !ui.audio) return;
  ui.call.setAudioEnabled(!ui.call.mediaState.audio);
  render();
}

async function toggleCamera() {
  if (!ui.call || !ui.hadVideo) return;
  const btn = $("cam-btn");
  btn.disabled = true;
  try {
    if (ui.call.mediaState.video) {
      // Camera off: stop the device (its light goes out), send nothing.
      stopTrack(ui.video);
      setLocal(ui.audio, null);
      await ui.call.replaceVideo(null);
    } else {
      const track = await openCamera(ui.cameraId);
      if (!track) return;
      setLocal(ui.audio, track);
      await ui.call.replaceVideo(track);
    }
  } finally {
    btn.disabled = false;
    render();
  }
}

// -- rendering -------------------------------------------------------------------------------

function render() {
  const status = $("status");
  status.dataset.state = ui.state;
  status.textContent = t(ui.state === "prejoin" && ui.resumeToken ? "state.rejoin" : `state.${ui.state}`);
  const away = [...ui.tiles.values()].filter((x) => x.info.away).map((x) => displayName(x.info));
  const live = ui.state === "in_session" || ui.state === "alone";
  if (away.length && live) status.textContent = t("state.away", { name: away.join(", ") });
  // Practitioners: who is at the door, in the status line and the tab title.
  const waiting = ui.role === "practitioner" && ui.state !== "ended" ? ui.waitingClients : [];
  if (waiting.length && live) status.textContent = t("state.waiting", { name: waiting.map(waitingName).join(", ") });
  ui.knock.title(BASE_TITLE, waiting, waitingName, (name) => t("knock.waiting", { name }));
  const badge = $("role-badge");
  badge.hidden = !ui.role;
  if (ui.role) badge.textContent = t(ui.role === "practitioner" ? "role.practitioner" : "role.client");
  const practitioner = ui.role === "practitioner";
  document.body.dataset.role = ui.role || "";
  $("practitioner-panel").hidden = !practitioner;
  $("notes-panel").hidden = !practitioner || !signedIn();
  if (practitioner && !ui.notes && signedIn()) mountNotes();
  $("end-btn").hidden = !practitioner;
  const call = ui.call;
  const audioOn = Boolean(call?.mediaState.audio);
  const videoOn = Boolean(call?.mediaState.video);
  const mic = $("mic-btn");
  mic.textContent = t(audioOn ? "controls.mute" : "controls.unmute");
  mic.setAttribute("aria-pressed", String(!audioOn));
  mic.disabled = !ui.audio;
  const cam = $("cam-btn");
  cam.textContent = t(videoOn ? "controls.camoff" : "controls.camon");
  cam.setAttribute("aria-pressed", String(!videoOn));
  cam.disabled = !ui.hadVideo;
  const share = $("screen-btn");
  const sharing = Boolean(ui.screen?.sharing);
  share.hidden = !call?.screenCapable || !call.isJoined() || (!call.mayShareScreen && !sharing);
  share.textContent = t(sharing ? "screen.stop" : "screen.start");
  share.setAttribute("aria-pressed", String(sharing));
  $("screen-policy").checked = call?.screenShare !== "practitioners";
  renderFlags($("self-flags"), audioOn, videoOn || !call, false, { audio_only: call?.audioOnly });
  $("chat-send").disabled = !(call?.isJoined());
  $("lobby").hidden = ui.state !== "lobby";
  renderWaitingRoom();
  for (const tile of ui.tiles.values()) ui.tiles.renderTile(tile);
  ui.tiles.layout();
  renderParticipants();
  renderSafetyCodes();
  ui.recording?.render();
  ui.e2ee?.render();
  ui.quality?.render();
  if (ui.state === "ended") {
    let reason = ui.endReason === "room_ended" && ui.endedByMe ? "room_ended.self" : ui.endReason;
    if (reason === "left" && ui.role === "client") reason = "left.client"; // how to come back
    $("ended-msg").textContent = t(`ended.${reason}`);
    // A practitioner can always go back in (a fresh token) or back to the dashboard.
    const back = ui.role === "practitioner" && signedIn();
    $("ended-actions").hidden = !back;
    $("ended-rejoin").hidden = !back || ui.endReason === "room_ended";
  }
  for (const el of document.querySelectorAll("#prejoin-msg[data-i18n], option[data-i18n], #speaker-msg[data-i18n]")) el.textContent = t(el.dataset.i18n);
  const net = $("net-check");
  if (ui.net) net.textContent = t(net.dataset.i18n, { ms: ui.net.ms ?? "" });
}

// -- diagnostics ------------------------------------------------------------------------------

exposeDiagnostics(ui);

main().catch((err) => {
  console.error("fortrolig: start-up failed", err);
  ui.state = "ended";
  ui.endReason = "error";
  onEnded("error");
  render();
});
