"""Sync marks in a recorded WebM: flashes on video, beeps on audio, and their skew.

The participants of the recording tests publish fortrolig.loadtests.sources' flash + beep
tracks (or a browser plays a file with the same marks); these helpers decode a decrypted part
with PyAV and find the marks, so that a test can measure lip sync in what was stored.
"""

from __future__ import annotations

import io
from typing import Any

import av
import numpy as np


def flashes(container: Any, stream: Any) -> list[float]:
    """Times of frames that are bright after a dark one."""
    out: list[float] = []
    dark = True
    for frame in container.decode(stream):
        luma = float(np.asarray(frame.to_ndarray(format="gray")).mean())
        if luma > 128 and dark:
            out.append(float(frame.time))
        dark = luma < 64
    return out


def beeps(container: Any, stream: Any) -> list[float]:
    """Onset times of the beeps (5 ms resolution), after at least 300 ms of quiet."""
    out: list[float] = []
    quiet_since = -1.0
    for frame in container.decode(stream):
        samples = frame.to_ndarray().astype(np.float64)
        mono = samples.mean(axis=0) if samples.ndim == 2 and samples.shape[0] > 1 else samples
        mono = mono.reshape(-1)
        step = frame.sample_rate // 200
        for i in range(0, len(mono) - step + 1, step):
            t = float(frame.time) + i / frame.sample_rate
            loud = np.sqrt(np.mean(mono[i : i + step] ** 2)) > 0.05
            if loud and t - quiet_since > 0.3 and quiet_since >= 0:
                out.append(t)
            if loud:
                quiet_since = -1e9 if quiet_since < 0 else quiet_since
                quiet_since = t + 1e9  # not quiet now
            elif quiet_since > t or quiet_since < 0:
                quiet_since = t
    return out


def analyse(plain: bytes) -> dict[str, dict[str, Any]]:
    """Per track title: kind, first/last timestamps, and the sync marks found."""
    result: dict[str, dict[str, Any]] = {}
    with av.open(io.BytesIO(plain)) as container:
        titles = [s.metadata.get("title", "") for s in container.streams]
    for index, title in enumerate(titles):
        with av.open(io.BytesIO(plain)) as container:
            stream = container.streams[index]
            kind = stream.type
            marks = flashes(container, stream) if kind == "video" else beeps(container, stream)
        with av.open(io.BytesIO(plain)) as container:
            times = [
                float(p.pts * p.time_base)
                for p in container.demux(container.streams[index])
                if p.pts is not None
            ]
        result[title] = {"kind": kind, "first": min(times), "last": max(times), "marks": marks}
    return result


def skews(flash_times: list[float], beep_times: list[float]) -> list[float]:
    """Flash minus nearest beep, for every flash with a beep within half a second."""
    out = []
    for flash in flash_times:
        nearest = min(beep_times, key=lambda b: abs(b - flash), default=None)
        if nearest is not None and abs(nearest - flash) < 0.5:
            out.append(flash - nearest)
    return out
