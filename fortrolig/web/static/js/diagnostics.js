// window.fortrolig on the room page: a small handle for tests and support. State and media
// statistics, nothing secret: no tokens, no keys (safety codes are shown on screen anyway;
// tryOpen says only whether this page's keys open a frame).

/** Define window.fortrolig over the page's state object ``ui`` (read when asked). */
export function exposeDiagnostics(ui) {
  Object.defineProperty(window, "fortrolig", {
    value: Object.freeze({
      get state() {
        return ui.state;
      },
      get participantId() {
        return ui.call?.selfId ?? null;
      },
      get role() {
        return ui.role;
      },
      get iceTransportPolicy() {
        return ui.call?.iceTransportPolicy ?? null;
      },
      states: () => [...ui.stateLog],
      participants: () => [...(ui.call?.participants.values() ?? [])].map((p) => ({ ...p })),
      waitingClients: () => ui.waitingClients.map((c) => ({ ...c })),
      knocks: () => ({ chimes: ui.knock.count, notified: ui.knock.notified }),
      precheck: () => ({ micPeak: ui.precheck?.peak ?? 0, net: ui.net }),
      recording: () => ui.recording?.snapshot() ?? null,
      stats: () => ui.call?.stats() ?? Promise.resolve(null),
      // This page's connection quality, what it shows of each other participant, audio-only.
      quality: () => ({
        self: ui.quality?.level ?? "unknown",
        peers: Object.fromEntries([...ui.tiles.values()].map((x) => [x.info.id, ui.quality?.levelOf(x.info)])),
        audioOnly: Boolean(ui.call?.audioOnly),
        notice: ui.quality?.notice.root.hidden === false ? ui.quality.notice.root.dataset.key : null,
      }),
      safetyCodes: () => ui.chat?.safetyCodes() ?? {},
      e2ee: () => ui.e2ee?.snapshot() ?? Promise.resolve(null),
      // Can this page's keys open a sealed frame (base64) of a participant? Never the plaintext.
      tryOpen: (participantId, frame, kind, isKeyFrame) =>
        ui.media?.tryOpen(participantId, frameBytes(frame), kind, Boolean(isKeyFrame)) ?? Promise.resolve(false),
      dropSignaling: () => ui.call?.dropSignaling(),
      // End this page's screen share as the browser's own "Stop sharing" control does.
      endScreenShare: () => {
        const track = ui.screen?.track;
        track?.stop();
        track?.dispatchEvent(new Event("ended"));
      },
      get redirects() {
        return ui.call?.redirects ?? 0;
      },
    }),
  });
}

/** A frame in base64 (no chat's size limit: a keyframe is tens of kilobytes). */
function frameBytes(text) {
  const s = atob(String(text));
  return Uint8Array.from(s, (c) => c.charCodeAt(0));
}
