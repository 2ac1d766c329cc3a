"""Held places in the room rules (pure): a dropped participant is away, counts, comes back."""

from __future__ import annotations

import pytest

from fortrolig.core.errors import Conflict
from fortrolig.signaling.rooms import Participant, Room


def room(size: int = 2) -> Room:
    r = Room("room_1", "prac", size, 0.0, has_waiting_room=True)
    r.admit(Participant("p_prac", "practitioner"))
    r.admit(Participant("p_anna", "client"))
    return r


def test_a_held_place_counts_but_is_not_present() -> None:
    r = room()
    held = r.hold("p_anna", until=60.0)
    assert held is not None and held.away_until == 60.0
    assert "p_anna" not in r.participants and r.occupied() == 2
    assert [x.id for x in r.roster("p_prac")] == ["p_anna"]
    with pytest.raises(Conflict) as exc:
        r.check_can_enter("p_bo")
    assert exc.value.code == "room_full"
    r.check_can_enter("p_anna")  # its own place is its to take back


def test_coming_back_takes_the_place_back() -> None:
    r = room()
    r.hold("p_anna", until=60.0)
    back = r.come_back("p_anna")
    assert back is not None and back.away_until is None
    r.admit(back)
    assert set(r.participants) == {"p_prac", "p_anna"} and not r.away
    assert r.come_back("p_anna") is None


def test_places_expire_at_their_deadline_only() -> None:
    r = room(3)
    r.admit(Participant("p_bo", "client"))
    r.hold("p_anna", until=60.0)
    r.hold("p_bo", until=90.0)
    assert r.expire_away(59.9) == []
    assert [x.id for x in r.expire_away(60.0)] == ["p_anna"]
    oldest = r.oldest_away_client()
    assert oldest is not None and oldest.id == "p_bo"
    assert [x.id for x in r.expire_away(1000.0)] == ["p_bo"] and r.occupied() == 1


def test_holding_someone_not_present_changes_nothing() -> None:
    r = room()
    assert r.hold("p_nobody", until=60.0) is None
    assert r.occupied() == 2 and not r.away
