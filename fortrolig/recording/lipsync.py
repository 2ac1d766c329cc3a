"""Lip sync inside a recording part: a camera follows its participant's microphone.

A part's timeline is frozen when it starts (recorder.py): later frames advance by their own
RTP timestamps, so audio plays without gaps or jumps. But a publisher's audio and video RTP
clocks need not keep step with each other. A browser's audio RTP timestamp counts samples, and
samples go missing or arrive late when its audio thread stalls under load or the microphone
changes; its video timestamp follows the capture clock. The sender reports say where each
clock really is (RFC 3550 §6.4.1), and a receiver re-reads them to keep lip sync, as Chromium's
own playout does. The recorder does the same for video: each camera frame is placed where the
participant's audio timeline has the same instant by the latest sender reports, approached in
small steps so that the video never jumps, and never before the frame before it. Audio stays
continuous; only video moves (a frame has no fixed duration, a sample has).
"""

from __future__ import annotations

from dataclasses import dataclass

STEP_S = 0.010
"""Largest change of a camera's correction per frame (0.3 s per second at 30 fps)."""
DEADBAND_S = 0.005
"""Errors below this are sender-report jitter (their extrapolation), not drift."""
MAX_CORRECTION_S = 1.0
"""A camera is never moved further than this from its own clock."""
IMPLAUSIBLE_S = 3.0
"""An error this large is a broken or restarted sender report, not drift: not followed."""
FRAME_STEP_S = 0.001
"""A moved frame still comes at least this long after the one before it (WebM's ms)."""


@dataclass
class VideoSync:
    """The correction of one camera track in one part (seconds added to its own-clock pts)."""

    correction: float = 0.0
    largest: float = 0.0  # the largest |correction| so far (diagnostics)
    last_pts: float | None = None

    def place(self, own_pts: float, audio_pts: float | None) -> float:
        """Where the frame goes: ``own_pts`` (its RTP clock on the part's timeline) moved
        towards ``audio_pts`` (the participant's audio timeline at the same instant, None when
        there is no audio or no sender report), one bounded step per frame."""
        if audio_pts is not None:
            error = audio_pts - own_pts - self.correction
            if DEADBAND_S < abs(error) < IMPLAUSIBLE_S:
                step = max(-STEP_S, min(STEP_S, error))
                self.correction = max(
                    -MAX_CORRECTION_S, min(MAX_CORRECTION_S, self.correction + step)
                )
                self.largest = max(self.largest, abs(self.correction))
        pts = own_pts + self.correction
        if self.last_pts is not None and pts < self.last_pts + FRAME_STEP_S:
            pts = self.last_pts + FRAME_STEP_S
        self.last_pts = pts
        return pts
