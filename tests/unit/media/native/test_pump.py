"""The Pump (the GIL-free I/O thread) and the data-plane lock with more than one thread."""

from __future__ import annotations

import itertools
import sys
import threading
import time

import pytest
from pylibsrtp import Policy

from fortrolig.media import _fastpath
from tests.support.polling import held_within
from tests.unit.media.native.harness import (
    MEDIA_SSRC,
    VP8_DELTA,
    VP8_KEY,
    Net,
    fill_queue,
    make_leg,
    make_track,
    notified,
    rtp,
    srtp_key,
    srtp_session,
    wired,
)

# ------------------------------------------------------------------------------------------
# Pump: the GIL-free I/O thread
# ------------------------------------------------------------------------------------------


def test_pump_forwards_media_on_its_thread_and_queues_the_rest(
    net: Net, pump: _fastpath.Pump
) -> None:
    track, _, calls = wired(net, nack=True, seq_start=10)
    assert net.transport.route(MEDIA_SSRC, track)
    pump.register(net.transport)
    assert pump.running == 1
    net.send_raw(net.peer_tx.protect(rtp(1)), pump=False)
    assert net.recv().sequence_number == 10  # nobody called on_readable
    net.send_raw(net.peer_tx.protect(rtp(4)), pump=False)
    assert net.recv().sequence_number == 13
    stun = bytes([0x00, 0x01, 0x00, 0x00]) + bytes(16)
    net.send_raw(stun, pump=False)
    assert held_within(lambda: pump.pending == 2, 2.0)  # the NACK list and the STUN datagram
    assert notified(pump)
    assert (calls.missing, net.fallback) == ([], [])  # Python runs only in dispatch()
    pump.dispatch()
    assert calls.missing == [[2, 3]]
    assert net.fallback == [(stun, net.peer.getsockname())]
    assert pump.pending == 0
    assert not notified(pump, 0.05)
    assert net.counters.native_datagrams == 2
    assert pump.wakeups >= 1


def test_pump_queues_keyframe_requests(net: Net, pump: _fastpath.Pump) -> None:
    track, calls = make_track(net.counters, codec=_fastpath.KEYFRAME_VP8)
    track.add_leg(make_leg(net, gated=True))
    net.transport.route(MEDIA_SSRC, track)
    pump.register(net.transport)
    net.send_raw(net.peer_tx.protect(rtp(1, payload=VP8_DELTA)), pump=False)
    assert notified(pump)
    assert calls.keyframes == 0
    pump.dispatch()
    assert calls.keyframes == 1
    net.assert_silent()
    net.send_raw(net.peer_tx.protect(rtp(2, payload=VP8_KEY)), pump=False)
    assert net.recv().payload == VP8_KEY


def test_pump_register_unregister_close_and_stop(net: Net, pump: _fastpath.Pump) -> None:
    pump.register(net.transport)
    with pytest.raises(RuntimeError):
        pump.register(net.transport)
    pump.unregister(net.transport)
    pump.unregister(net.transport)  # idempotent
    net.send_raw(b"\x00one", pump=False)
    assert not notified(pump, 0.1)  # the pump no longer reads this socket
    net.pump()  # the event loop's reader would
    assert [d for d, _ in net.fallback] == [b"\x00one"]

    pump.register(net.transport)
    net.transport.close()  # detaches from the pump
    with pytest.raises(RuntimeError):
        pump.register(net.transport)
    pump.stop()
    pump.stop()
    assert pump.running == 0


def test_pump_counts_events_it_cannot_queue(net: Net, pump: _fastpath.Pump) -> None:
    pump.register(net.transport)
    ring = _fastpath.RING_SIZE
    sent = fill_queue(net, pump, ring + 4)
    assert (pump.pending, pump.dropped_events) == (ring, 4)
    pump.dispatch()
    assert [d for d, _ in net.fallback] == sent[:ring]
    assert pump.pending == 0


def test_pump_dispatch_leaves_no_event_unannounced(net: Net, pump: _fastpath.Pump) -> None:
    pump.register(net.transport)
    sent = fill_queue(net, pump, _fastpath.RING_SIZE)
    late: list[bool] = []

    def meanwhile(data: bytes) -> None:
        if data == sent[0]:  # while dispatch() delivers the first event, one more arrives
            net.send_raw(b"\x00late", pump=False)
            late.append(held_within(lambda: pump.pending == _fastpath.RING_SIZE, 2.0))

    net.hooks.append(meanwhile)
    pump.dispatch()
    assert late == [True]
    assert pump.pending == 0 or notified(pump)  # else nobody calls dispatch() again


# ------------------------------------------------------------------------------------------
# The data-plane lock with more than one thread
# ------------------------------------------------------------------------------------------


# A deadlock blocks in C, where the default (signal) timeout cannot interrupt: the thread
# method ends the run with a stack dump instead of hanging it.
@pytest.mark.timeout(30, method="thread")
def test_a_second_python_thread_never_deadlocks_on_the_lock(net: Net) -> None:
    """locked_call runs libsrtp through cffi, which releases the GIL while holding the lock; a
    second Python thread then waits for the lock. It must wait with the GIL released, or the
    first thread could never return (the per-test timeout turns a deadlock into a failure)."""
    track, _ = make_track(net.counters, nack=True)
    session = srtp_session(srtp_key("lock test"), Policy.SSRC_ANY_OUTBOUND)
    stop = threading.Event()
    errors: list[BaseException] = []
    seqs = itertools.count(1)  # its own: SEQUENCE is for SRTP-protected examples

    def other() -> None:
        try:
            while not stop.is_set():
                track.ingest(rtp(next(seqs) % 65536))
                track.report()
                track.nack_due()
        except BaseException as exc:  # reported below, not swallowed
            errors.append(exc)

    worker = threading.Thread(target=other)
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)  # hand the GIL over often, also inside locked_call
    worker.start()
    try:
        deadline = time.monotonic() + 1.0
        i = 0
        while time.monotonic() < deadline:
            _fastpath.locked_call(session.protect, rtp(i % 65536, ssrc=0x5151))
            i += 1
    finally:
        stop.set()
        worker.join(5)
        sys.setswitchinterval(interval)
    assert not worker.is_alive() and errors == []
    assert track.packets_received > 0


def test_the_pump_cannot_be_stopped_from_a_callback_under_the_lock(
    net: Net, pump: _fastpath.Pump
) -> None:
    """An inline-mode callback runs with the lock held; joining the pump thread there would wait
    for itself, so stop() refuses instead of hanging."""
    refused: list[str] = []

    def stop_from_callback(_: bytes) -> None:
        try:
            pump.stop()
        except RuntimeError as exc:
            refused.append(str(exc))

    net.hooks.append(stop_from_callback)
    net.send_raw(b"\x00stop")
    assert refused and "callback" in refused[0]
    assert pump.running == 1
    pump.stop()
    assert pump.running == 0
