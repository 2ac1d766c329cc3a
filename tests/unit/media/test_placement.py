"""Room placement over media workers (pure bookkeeping)."""

from __future__ import annotations

from fortrolig.media.placement import Placement


def test_rooms_go_to_the_least_loaded_worker_and_stay() -> None:
    p: Placement[str] = Placement()
    p.add("r1", "a", p.least_loaded(["w1", "w2"]))
    p.add("r1", "b", "w1")
    assert p.least_loaded(["w1", "w2"]) == "w2"
    p.add("r2", "c", p.least_loaded(["w1", "w2"]))
    assert (p.worker_of("r1"), p.worker_of("r2")) == ("w1", "w2")
    assert (p.load("w1"), p.load("w2"), p.load("w3")) == (2, 1, 0)
    assert p.room_of("w1", "b") == "r1" and p.room_of("w2", "b") is None


def test_a_room_is_forgotten_with_its_last_participant() -> None:
    p: Placement[str] = Placement()
    p.add("r1", "a", "w1")
    p.add("r1", "b", "w1")
    assert p.remove("r1", "a") == "w1"
    assert p.worker_of("r1") == "w1"
    assert p.remove("r1", "b") == "w1"
    assert p.worker_of("r1") is None and p.load("w1") == 0
    assert p.remove("r1", "b") is None  # idempotent


def test_remove_room_returns_its_people() -> None:
    p: Placement[str] = Placement()
    p.add("r1", "a", "w1")
    p.add("r1", "b", "w1")
    assert p.remove_room("r1") == ("w1", {"a", "b"})
    assert p.remove_room("r1") is None
    assert p.load("w1") == 0


def test_evict_returns_everyone_a_dead_worker_carried() -> None:
    p: Placement[str] = Placement()
    p.add("r1", "a", "w1")
    p.add("r1", "b", "w1")
    p.add("r2", "c", "w2")
    assert sorted(p.evict("w1")) == [("r1", "a"), ("r1", "b")]
    assert p.worker_of("r1") is None and p.worker_of("r2") == "w2"
    assert p.evict("w1") == []
