// The check before joining: the microphone's level (is it picking anything up?), a test sound
// for the speakers, and whether this browser reaches the node (HTTP and the signaling
// WebSocket, with the round trip). The camera is the preview itself. Nothing leaves the page
// but the two connection probes, which carry no token.

import { newAudioContext, playNotes } from "./tones.js";

/** Root-mean-square level of float samples, mapped to 0..1 so that speech sits mid-scale. */
export function levelOf(samples) {
  let sum = 0;
  for (let i = 0; i < samples.length; i += 1) sum += samples[i] * samples[i];
  const rms = Math.sqrt(sum / Math.max(1, samples.length));
  return Math.min(1, rms * 4);
}

export class PreCheck {
  /** @param {{meter: HTMLMeterElement, onLevel?: (level: number) => void}} opts */
  constructor({ meter, onLevel }) {
    this.meter = meter;
    this.onLevel = onLevel;
    this.stopLevel = () => {};
    this.peak = 0; // the loudest level seen since the track was set (for tests and support)
    this.audio = null;
  }

  /** Follow ``track``'s level on the meter (null: nothing to show). */
  watch(track) {
    this.stopLevel();
    this.peak = 0;
    this.meter.value = 0;
    if (!track) return;
    // Read the samples off the track itself where the browser can (no AudioContext, so no
    // autoplay gesture is needed); otherwise an analyser.
    if (typeof MediaStreamTrackProcessor === "function") this.readFrames(track);
    else this.analyse(track);
  }

  show(level) {
    this.meter.value = level;
    this.peak = Math.max(this.peak, level);
    this.onLevel?.(level);
  }

  readFrames(track) {
    const reader = new MediaStreamTrackProcessor({ track: track.clone() }).readable.getReader();
    let running = true;
    let last = 0;
    this.stopLevel = () => {
      running = false;
      reader.cancel().catch(() => {});
    };
    const pump = async () => {
      while (running) {
        const { value: frame, done } = await reader.read();
        if (done) return;
        try {
          const now = performance.now();
          if (now - last > 100) {
            last = now;
            const samples = new Float32Array(frame.numberOfFrames);
            frame.copyTo(samples, { planeIndex: 0, format: "f32-planar" });
            this.show(levelOf(samples));
          }
        } finally {
          frame.close();
        }
      }
    };
    pump().catch(() => {});
  }

  analyse(track) {
    const ctx = newAudioContext();
    if (!ctx) return;
    const analyser = ctx.createAnalyser();
    analyser.fftSize = 1024;
    ctx.createMediaStreamSource(new MediaStream([track])).connect(analyser);
    const samples = new Float32Array(analyser.fftSize);
    const timer = setInterval(() => {
      analyser.getFloatTimeDomainData(samples);
      this.show(levelOf(samples));
    }, 100);
    this.stopLevel = () => {
      clearInterval(timer);
      ctx.close().catch(() => {});
    };
  }

  /** A short two-note chime on the speakers (the click that asks for it unlocks audio). */
  async speakerTest() {
    this.audio ||= newAudioContext();
    if (!this.audio) return false;
    await this.audio.resume();
    playNotes(this.audio, [523, 659, 784], { step: 0.25, attack: 0.03, length: 0.22, peak: 0.25 });
    return true;
  }

  /**
   * Whether the node answers: GET /healthz and a WebSocket to /ws opened and closed again (no
   * hello, no token). Resolves to {ok, ms, step}: ``step`` names what failed.
   */
  async connection(wsUrl, timeoutMs = 8000) {
    const t0 = performance.now();
    try {
      const resp = await fetch("/healthz", { cache: "no-store", credentials: "omit" });
      if (!resp.ok) return { ok: false, step: "http" };
    } catch {
      return { ok: false, step: "http" };
    }
    const http = performance.now() - t0;
    const ws = await new Promise((resolve) => {
      let socket;
      const timer = setTimeout(() => {
        socket?.close();
        resolve(false);
      }, timeoutMs);
      try {
        socket = new WebSocket(wsUrl);
      } catch {
        clearTimeout(timer);
        resolve(false);
        return;
      }
      socket.onopen = () => {
        clearTimeout(timer);
        socket.close(1000);
        resolve(true);
      };
      socket.onerror = () => {
        clearTimeout(timer);
        resolve(false);
      };
    });
    if (!ws) return { ok: false, step: "websocket" };
    return { ok: true, ms: Math.round(http) };
  }
}
