"""Pure RTP helpers still in Python: the NTP clock of sender reports.

Keyframe detection, RTX wrapping, sequence wrap-around and NACK tracking moved to the native
data plane (fortrolig/media/native/); their tests are in tests/unit/media/native/.
"""

from __future__ import annotations

import time

from aiortc import clock

from fortrolig.media.forwarding import ntp_now


def test_ntp_now_matches_aiortc_clock() -> None:
    now = time.time()
    ours = ntp_now(now)
    theirs = clock.current_ntp_time()
    assert abs(ours - theirs) / (1 << 32) < 0.5  # same epoch and scale (taken a moment apart)
