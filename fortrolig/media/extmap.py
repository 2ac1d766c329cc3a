"""Stable RTP header extension ids across renegotiation.

aiortc's ``createOffer`` gives every transceiver its default extension ids (``sdes:mid`` = 1,
...), whatever the first negotiation agreed. A browser that published with other ids (Chromium
offers ``ssrc-audio-level`` = 1, ``sdes:mid`` = 4, ...) refuses the SFU's next offer: "RTP
extension ID reassignment not supported". So the SFU's offers reuse the ids of the
participant's publish offer, and give any other extension an id not taken.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

# At most three digits: an id is 1..255 (RFC 8285), and int() of a browser's 5,000-digit
# "id" raises ValueError (Python's limit on integer string conversion), not a parse error.
_EXTMAP = re.compile(r"^a=extmap:(\d{1,3})(/[a-z]+)?[ \t]+(\S+)(.*)$")
_ONE_BYTE_IDS = range(1, 15)  # one-byte header extension ids (RFC 8285)
_IDS = range(1, 256)  # one-byte or two-byte


def extmap_ids(sdp: str) -> dict[str, int]:
    """URI → id of every ``a=extmap`` in ``sdp`` (the first mapping of a URI wins).

    ``sdp`` is a browser's: a line whose id is not a valid extension id (0, over 255, or not a
    number) is ignored, so that the SFU's own offers never carry it.
    """
    ids: dict[str, int] = {}
    for line in sdp.splitlines():
        m = _EXTMAP.match(line)
        if m and int(m.group(1)) in _IDS:
            ids.setdefault(m.group(3), int(m.group(1)))
    return ids


def align_extmap_ids(sdp: str, ids: Mapping[str, int]) -> str:
    """``sdp`` with each extension's id taken from ``ids`` (URI → id) where it is known.

    An extension ``ids`` does not know keeps its id unless that id is taken by another URI;
    then it gets a free one (or is left out when none is free: extensions are optional).
    """
    assigned = dict(ids)
    used = set(assigned.values())
    out = []
    for line in sdp.split("\r\n"):
        m = _EXTMAP.match(line)
        if m:
            uri = m.group(3)
            if uri not in assigned:
                wanted = int(m.group(1))
                if wanted in used:
                    wanted = next((i for i in _ONE_BYTE_IDS if i not in used), 0)
                if not wanted:
                    continue
                assigned[uri] = wanted
                used.add(wanted)
            line = f"a=extmap:{assigned[uri]}{m.group(2) or ''} {uri}{m.group(4)}"
        out.append(line)
    return "\r\n".join(out)
