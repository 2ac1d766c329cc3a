// Short synthesised sounds (Web Audio): the practitioner's knock and the pre-call speaker test.

/** A new AudioContext, or null where the browser has none. */
export function newAudioContext() {
  const Ctx = window.AudioContext || window.webkitAudioContext;
  return Ctx ? new Ctx() : null;
}

/**
 * Play ``freqs`` one after another on ``ctx``: each note starts ``step`` s after the previous,
 * rises to ``peak`` gain in ``attack`` s and fades out by ``length`` s.
 */
export function playNotes(ctx, freqs, { step, attack, length, peak }) {
  const start = ctx.currentTime + 0.02;
  freqs.forEach((freq, i) => {
    const osc = ctx.createOscillator();
    const gain = ctx.createGain();
    osc.frequency.value = freq;
    const t0 = start + i * step;
    gain.gain.setValueAtTime(0.0001, t0);
    gain.gain.exponentialRampToValueAtTime(peak, t0 + attack);
    gain.gain.exponentialRampToValueAtTime(0.0001, t0 + length);
    osc.connect(gain).connect(ctx.destination);
    osc.start(t0);
    osc.stop(t0 + length + 0.02);
  });
}
