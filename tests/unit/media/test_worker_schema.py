"""The media worker channel's messages: round trips on wire JSON, and every class of bad input."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fortrolig.core.errors import (
    BadRequest,
    Conflict,
    FortroligError,
    NotFound,
    ProtocolError,
)
from fortrolig.media import worker_schema as s
from fortrolig.media.settings import IceServer, MediaSettings

SDP = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n"
SNAPSHOT = {
    "peers_by_state": {"connected": 2},
    "peers": 2,
    "rooms": 1,
    "legs": 4,
    "counters": {"forwarded_packets": 1200},
    "codec_instances": 0,
}
ROOM = {"room_id": "room_q2", "participant_id": "par_x7"}

# What the signaling process writes to a worker's stdin, one line each.
CALLS: dict[str, dict[str, Any]] = {
    "open_peer": {"type": "open_peer", "id": 1, **ROOM},
    "publish": {"type": "publish", "id": 2, **ROOM, "sdp": SDP},
    "answer": {"type": "answer", "id": 3, **ROOM, "sdp": SDP},
    "add_candidate": {
        "type": "add_candidate",
        "id": 4,
        **ROOM,
        "candidate": "candidate:1 1 udp 2130706431 127.0.0.1 50000 typ host",
        "sdp_mid": "0",
        "sdp_mline_index": 0,
    },
    "close_peer": {"type": "close_peer", "id": 5, **ROOM},
    "close_room": {"type": "close_room", "id": 6, "room_id": "room_q2"},
    "srtp_profile": {"type": "srtp_profile", "id": 7, **ROOM},
    "snapshot": {"type": "snapshot", "id": 8},
    "shutdown": {"type": "shutdown", "id": 9},
    "start_recording": {
        "type": "start_recording",
        "id": 10,
        "room_id": "room_q2",
        "recording_id": "rec_2kd9",
        "key": "ab" * 32,
        "participants": ["par_x7", "par_y8"],
    },
    "include_in_recording": {
        "type": "include_in_recording",
        "id": 11,
        "room_id": "room_q2",
        "recording_id": "rec_2kd9",
        "participant_id": "par_z9",
    },
    "stop_recording": {
        "type": "stop_recording",
        "id": 12,
        "room_id": "room_q2",
        "recording_id": "rec_2kd9",
    },
}
# What a worker writes to its stdout: replies (with the call's id) and events (without).
FROM_WORKER: dict[str, dict[str, Any]] = {
    "done": {"type": "done", "id": 1},
    "recording_stopped": {
        "type": "recording_stopped",
        "id": 12,
        "parts": [
            {
                "index": 0,
                "name": "rec_2kd9.0.webm.enc",
                "starts_at_s": 0.0,
                "duration_s": 20.5,
                "tracks": [
                    {"track_id": "t_a", "participant_id": "par_x7", "kind": "audio"},
                    {"track_id": "t_v", "participant_id": "par_x7", "kind": "video"},
                ],
                "frames": 1640,
            }
        ],
    },
    "published": {"type": "published", "id": 2, "sdp": SDP},
    "srtp_profile": {"type": "srtp_profile", "id": 7, "profile": "SRTP_AEAD_AES_256_GCM"},
    "snapshot": {"type": "snapshot", "id": 8, "snapshot": SNAPSHOT},
    "error": {"type": "error", "id": 2, "cls": "BadRequest", "code": "bad_sdp", "message": "no"},
    "ready": {"type": "ready", "pid": 4242},
    "stats": {"type": "stats", "snapshot": SNAPSHOT},
    "offer": {"type": "offer", "participant_id": "par_x7", "sdp": SDP},
    "connected": {"type": "connected", "participant_id": "par_x7"},
    "failed": {"type": "failed", "participant_id": "par_x7", "reason": "connect_timeout"},
}


@pytest.mark.parametrize("name", sorted(CALLS))
def test_call_round_trip(name: str) -> None:
    raw = json.dumps(CALLS[name])
    call = s.parse_call(raw)
    assert isinstance(call, s.Call) and call.request.type == name
    assert call.id == CALLS[name]["id"]
    assert json.loads(s.dump(call)) == CALLS[name]
    assert s.parse_call(s.dump(call)) == call


@pytest.mark.parametrize("name", sorted(FROM_WORKER))
def test_reply_and_event_round_trip(name: str) -> None:
    message = s.parse_from_worker(json.dumps(FROM_WORKER[name]).encode())
    inner = message.response if isinstance(message, s.Reply) else message
    assert inner.type == name
    assert json.loads(s.dump(message)) == FROM_WORKER[name]
    assert s.parse_from_worker(s.dump(message)) == message


def test_every_message_type_has_a_sample() -> None:
    assert set(CALLS) == set(s.REQUESTS)
    assert set(FROM_WORKER) == set(s.RESPONSES) | set(s.EVENTS)


def test_typed_values() -> None:
    call = s.parse_call(json.dumps(CALLS["add_candidate"]))
    assert call.request == s.AddCandidate(
        "room_q2", "par_x7", CALLS["add_candidate"]["candidate"], "0", 0
    )
    null = {**CALLS["add_candidate"], "sdp_mid": None, "sdp_mline_index": None}
    request = s.parse_call(json.dumps(null)).request
    assert isinstance(request, s.AddCandidate)
    assert request.sdp_mid is None and request.sdp_mline_index is None
    reply = s.parse_from_worker(json.dumps({"type": "srtp_profile", "id": 3, "profile": None}))
    assert reply == s.Reply(3, s.SrtpProfile(None))


def test_a_line_is_one_line() -> None:
    line = s.dump(s.Reply(1, s.Published("a\r\nb\n")))
    assert "\n" not in line


@pytest.mark.parametrize(
    "raw", [b"", b"\xff\xfe", "[1, 2]", "42", '"publish"', "{", '{"type": "done", "id": NaN}']
)
def test_bad_json(raw: str | bytes) -> None:
    for parse in (s.parse_call, s.parse_from_worker):
        with pytest.raises(ProtocolError) as err:
            parse(raw)
        assert err.value.code == "bad_json"


@pytest.mark.parametrize("raw", ['{"id": 1}', '{"type": 7, "id": 1}', '{"type": null}'])
def test_bad_type(raw: str) -> None:
    for parse in (s.parse_call, s.parse_from_worker):
        with pytest.raises(ProtocolError) as err:
            parse(raw)
        assert err.value.code == "bad_type"


def test_unknown_type_and_wrong_direction() -> None:
    for raw, parse in (
        ('{"type": "reboot", "id": 1}', s.parse_call),
        (json.dumps(FROM_WORKER["ready"]), s.parse_call),  # an event is never a request
        (json.dumps(CALLS["open_peer"]), s.parse_from_worker),  # nor a request a reply
    ):
        with pytest.raises(ProtocolError) as err:
            parse(raw)
        assert err.value.code == "unknown_type"


@pytest.mark.parametrize(
    "message",
    [
        {k: v for k, v in CALLS["publish"].items() if k != "id"},  # a call without its id
        {**CALLS["publish"], "id": "2"},
        {**CALLS["publish"], "id": True},
        {**CALLS["publish"], "id": -1},
        {k: v for k, v in CALLS["publish"].items() if k != "sdp"},
        {**CALLS["publish"], "sdp": None},
        {**CALLS["publish"], "sdp": 5},
        {**CALLS["publish"], "sdp": "x" * (s.SDP_MAX + 1)},
        {**CALLS["publish"], "room_id": "r" * (s.ID_MAX + 1)},
        {**CALLS["publish"], "op": "publish"},  # the old wire format's fields are unknown
        {k: v for k, v in CALLS["add_candidate"].items() if k != "sdp_mline_index"},
        {**CALLS["add_candidate"], "sdp_mline_index": "0"},
        {**CALLS["add_candidate"], "sdp_mline_index": False},
    ],
)
def test_bad_call_field(message: dict[str, Any]) -> None:
    with pytest.raises(ProtocolError) as err:
        s.parse_call(json.dumps(message))
    assert err.value.code == "bad_field"


@pytest.mark.parametrize(
    "message",
    [
        {"type": "done"},  # a reply without the id of its call
        {"type": "published", "id": 1},
        {"type": "snapshot", "id": 1, "snapshot": [1]},
        {"type": "stats", "snapshot": "full"},
        {"type": "ready", "pid": "4242"},
        {"type": "failed", "participant_id": "p", "reason": None},
        {"type": "error", "id": 1, "cls": "BadRequest", "code": "bad_sdp"},
        {**FROM_WORKER["connected"], "sdp": SDP},
    ],
)
def test_bad_field_from_worker(message: dict[str, Any]) -> None:
    with pytest.raises(ProtocolError) as err:
        s.parse_from_worker(json.dumps(message))
    assert err.value.code == "bad_field"


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(), st.binary()))
def test_parse_raises_only_protocol_error_on_arbitrary_input(raw: str | bytes) -> None:
    for parse in (s.parse_call, s.parse_from_worker):
        try:
            parse(raw)
        except ProtocolError:
            pass


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from(sorted(CALLS)),
    st.dictionaries(
        st.sampled_from(["id", "room_id", "participant_id", "sdp", "candidate", "sdp_mid"]),
        st.one_of(
            st.none(), st.booleans(), st.integers(), st.text(max_size=8), st.lists(st.none())
        ),
    ),
)
def test_calls_round_trip_or_raise(kind: str, fields: dict[str, Any]) -> None:
    try:
        call = s.parse_call(json.dumps({**CALLS[kind], **fields}))
    except ProtocolError:
        return
    assert s.parse_call(s.dump(call)) == call


def test_call_id_of_a_request_that_does_not_parse() -> None:
    assert s.call_id(json.dumps({"type": "publish", "id": 12})) == 12
    assert s.call_id(b"garbage") is None
    assert s.call_id('{"type": "publish"}') is None


@pytest.mark.parametrize(
    "error", [BadRequest("bad", code="bad_sdp"), NotFound("gone", code="no_peer"), Conflict("c")]
)
def test_domain_errors_cross_typed(error: FortroligError) -> None:
    failed = s.Failed.from_exception(error)
    back = s.parse_from_worker(s.dump(s.Reply(1, failed)))
    assert isinstance(back, s.Reply) and isinstance(back.response, s.Failed)
    raised = back.response.error()
    assert type(raised) is type(error)
    assert (raised.code, raised.message) == (error.code, error.message)


def test_other_errors_become_internal_and_unknown_classes_the_base() -> None:
    failed = s.Failed.from_exception(KeyError("secret detail"))
    assert failed == s.Failed("FortroligError", "internal_error", "media worker error")
    raised = s.Failed("NoSuchError", "odd", "m").error()
    assert type(raised) is FortroligError and raised.code == "odd"


def test_expect_returns_the_promised_response_or_raises() -> None:
    assert s.expect(s.Published(SDP), s.Published).sdp == SDP
    with pytest.raises(NotFound) as err:
        s.expect(s.Failed("NotFound", "no_peer", "gone"), s.Done)
    assert err.value.code == "no_peer"
    with pytest.raises(ProtocolError) as wrong:
        s.expect(s.Done(), s.Published)
    assert wrong.value.code == "bad_type"


def test_settings_round_trip() -> None:
    settings_ = MediaSettings(
        ice_host_addresses=("127.0.0.1", "::1"),
        ice_servers=(IceServer(urls=("stun:stun.example.eu:3478",)),),
        max_bitrate_bps=1_000_000,
        io_thread=False,
    )
    assert s.parse_settings(s.dump_settings(settings_)) == settings_
    assert s.parse_settings(s.dump_settings(MediaSettings())) == MediaSettings()


@pytest.mark.parametrize(
    "data",
    [
        {"ice_host_addresses": "127.0.0.1"},
        {"io_thread": 1},
        {"ice_servers": [{"username": "u"}]},
        {"max_bitrate": 5},
    ],
)
def test_bad_settings(data: dict[str, Any]) -> None:
    with pytest.raises(ProtocolError) as err:
        s.parse_settings(json.dumps(data))
    assert err.value.code == "bad_field"
