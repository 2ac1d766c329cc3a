// Camera and microphone: opening them with a chosen device, listing devices, and degrading to
// whatever exists (a client without a camera still joins).

const VIDEO = { width: { ideal: 640 }, height: { ideal: 480 }, frameRate: { ideal: 30 } };
const AUDIO = { echoCancellation: true, noiseSuppression: true, autoGainControl: true };

function videoConstraints(deviceId) {
  return deviceId ? { ...VIDEO, deviceId: { exact: deviceId } } : VIDEO;
}

function audioConstraints(deviceId) {
  return deviceId ? { ...AUDIO, deviceId: { exact: deviceId } } : AUDIO;
}

/**
 * Open camera and microphone (either may be "" = default, or null = none).
 * Returns {audio, video, denied}: tracks or null; denied is true when the user refused access.
 */
export async function openMedia(cameraId, micId) {
  const md = navigator.mediaDevices;
  if (!md?.getUserMedia) return { audio: null, video: null, denied: false };
  const wantVideo = cameraId !== null;
  const wantAudio = micId !== null;
  if (!wantVideo && !wantAudio) return { audio: null, video: null, denied: false };
  let denied = false;
  try {
    const stream = await md.getUserMedia({
      video: wantVideo ? videoConstraints(cameraId) : false,
      audio: wantAudio ? audioConstraints(micId) : false,
    });
    return { audio: stream.getAudioTracks()[0] || null, video: stream.getVideoTracks()[0] || null, denied };
  } catch (err) {
    denied = err?.name === "NotAllowedError";
  }
  // One of the two may be missing or busy: try each alone.
  const video = wantVideo ? await openOne("video", videoConstraints(cameraId)) : null;
  const audio = wantAudio ? await openOne("audio", audioConstraints(micId)) : null;
  return { audio, video, denied: denied && !audio && !video };
}

async function openOne(kind, constraints) {
  try {
    const stream = await navigator.mediaDevices.getUserMedia({ [kind]: constraints });
    return (kind === "video" ? stream.getVideoTracks() : stream.getAudioTracks())[0] || null;
  } catch {
    return null;
  }
}

export async function openCamera(cameraId) {
  return openOne("video", videoConstraints(cameraId || ""));
}

export async function openMicrophone(micId) {
  return openOne("audio", audioConstraints(micId || ""));
}

/** {cameras, microphones}: [{deviceId, label}] (labels are known once access was granted). */
export async function listDevices() {
  if (!navigator.mediaDevices?.enumerateDevices) return { cameras: [], microphones: [] };
  const all = await navigator.mediaDevices.enumerateDevices();
  const pick = (kind) =>
    all.filter((d) => d.kind === kind && d.deviceId).map((d, i) => ({ deviceId: d.deviceId, label: d.label || `${kind} ${i + 1}` }));
  return { cameras: pick("videoinput"), microphones: pick("audioinput") };
}

export function stopTrack(track) {
  if (track && track.readyState !== "ended") track.stop();
}

const PERMISSION_NAMES = { video: "camera", audio: "microphone" };

async function permissionStatus(kind) {
  try {
    return (await navigator.permissions?.query({ name: PERMISSION_NAMES[kind] })) ?? null;
  } catch {
    return null; // this browser does not report it
  }
}

/** {video, audio}: "granted" | "denied" | "prompt" | "unknown" (the browser's permission). */
export async function permissions() {
  const [video, audio] = await Promise.all([permissionStatus("video"), permissionStatus("audio")]);
  return { video: video?.state ?? "unknown", audio: audio?.state ?? "unknown" };
}

/**
 * Call onChange(kind, state) whenever the user changes the camera ("video") or microphone
 * ("audio") permission in the browser, so that a refused device can be opened as soon as it is
 * allowed, without a reload.
 */
export async function watchPermissions(onChange) {
  for (const kind of ["video", "audio"]) {
    const status = await permissionStatus(kind);
    if (status) status.addEventListener("change", () => onChange(kind, status.state));
  }
}
