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

_EXTMAP = re.compile(r"^a=extmap:(\d+)(/[a-z]+)?[ \t]+(\S+)(.*)$")
_ONE_BYTE_IDS = range(1, 15)  # one-byte header extension ids (RFC 8285)


def extmap_ids(sdp: str) -> dict[str, int]:
    """URI → id of every ``a=extmap`` in ``sdp`` (the first mapping of a URI wins)."""
    ids: dict[str, int] = {}
    for line in sdp.splitlines():
        m = _EXTMAP.match(line)
        if m:
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
