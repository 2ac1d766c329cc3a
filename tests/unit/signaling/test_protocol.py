"""Wire protocol: round trips on captured JSON, and every class of bad input."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fortrolig.core.errors import ProtocolError
from fortrolig.signaling import protocol as p

SDP = (
    "v=0\r\no=- 4611731400430051336 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"
    "a=group:BUNDLE 0 1\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\n"
    "a=mid:0\r\na=sendonly\r\na=rtpmap:111 opus/48000/2\r\n"
    "m=video 9 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\na=mid:1\r\na=sendonly\r\n"
    "a=rtpmap:96 VP8/90000\r\n"
)
CANDIDATE = "candidate:842163049 1 udp 1677729535 192.0.2.7 46154 typ srflx raddr 0.0.0.0 rport 0"
PARTICIPANT = {
    "id": "par_abc",
    "role": "practitioner",
    "name": "Dr. Ørsted",
    "audio": True,
    "video": False,
    "away": False,
    "audio_blocked": False,
    "video_blocked": True,
    "screen": False,
    "quality": "fair",
    "audio_only": False,
}

# Captured from the browser client and the server (docs/protocol.md shows the same).
CLIENT_SAMPLES: dict[str, dict[str, Any]] = {
    "hello": {"type": "hello", "v": 1, "token": "eyJhbGciOiJFZERTQSJ9.e30.c2ln"},
    "join": {"type": "join", "name": "Anna"},
    "end_room": {"type": "end_room"},
    "admit": {"type": "admit", "participant_id": "p_7kq2"},
    "deny": {"type": "deny", "participant_id": "p_7kq2"},
    "mute_participant": {"type": "mute_participant", "participant_id": "p_7kq2"},
    "remove_participant": {"type": "remove_participant", "participant_id": "p_7kq2"},
    "offer": {"type": "offer", "sdp": SDP},
    "answer": {"type": "answer", "sdp": SDP},
    "candidate": {"type": "candidate", "candidate": CANDIDATE, "sdpMid": "0", "sdpMLineIndex": 0},
    "chat": {"type": "chat", "text": "Hej, kan du høre mig? 👋", "id": "c-17"},
    "media_state": {
        "type": "media_state",
        "audio": False,
        "video": False,
        "audio_blocked": False,
        "video_blocked": True,
        "screen": True,
        "quality": "poor",
        "audio_only": True,
    },
    "set_screen_share": {"type": "set_screen_share", "allowed": "practitioners"},
    "leave": {"type": "leave"},
    "ping": {"type": "ping"},
    "record_request": {"type": "record_request", "client_id": "cli_4mz8"},
    "record_consent": {"type": "record_consent", "recording_id": "rec_2kd9", "accept": True},
    "record_stop": {"type": "record_stop", "recording_id": "rec_2kd9"},
}
SERVER_SAMPLES: dict[str, dict[str, Any]] = {
    "welcome": {
        "type": "welcome",
        "v": 1,
        "participant_id": "par_x7",
        "room_id": "room_q2",
        "role": "client",
        "ice_servers": [
            {
                "urls": ["turn:turn.example.eu:3478?transport=udp"],
                "username": "1700:par_x7",
                "credential": "c2VjcmV0",
            },
        ],
        "ice_transport_policy": "relay",
        "resume_token": "eyJ0.e30.sig",
        "limits": {"max_message_bytes": 65536, "chat_max_bytes": 4096, "heartbeat_s": 20.0},
    },
    "joined": {"type": "joined", "participants": [PARTICIPANT], "screen_share": "everyone"},
    "screen_share": {"type": "screen_share", "allowed": "practitioners", "by": "par_x7"},
    "participant_joined": {"type": "participant_joined", "participant": PARTICIPANT},
    "participant_left": {"type": "participant_left", "participant_id": "par_abc", "reason": "left"},
    "participant_away": {"type": "participant_away", "participant_id": "par_abc", "grace_s": 60},
    "participant_updated": {"type": "participant_updated", "participant": PARTICIPANT},
    "answer": {"type": "answer", "sdp": SDP},
    "offer": {"type": "offer", "sdp": SDP},
    "chat": {"type": "chat", "id": "c-17", "from_id": "par_x7", "text": "Hej", "ts": 1700000000123},
    "error": {
        "type": "error",
        "code": "chat_too_long",
        "message": "chat text too long",
        "ref": "chat",
    },
    "pong": {"type": "pong"},
    "bye": {"type": "bye", "reason": "room_ended"},
    "resume_token": {"type": "resume_token", "token": "eyJhbGciOiJFZERTQSJ9.e30.c2ln"},
    "redirect": {
        "type": "redirect",
        "url": "https://node-b.clinic.example",
        "ws_url": "wss://node-b.clinic.example/ws",
        "resume_token": "eyJhbGciOiJFZERTQSJ9.e30.c2ln",
    },
    "waiting": {"type": "waiting"},
    "muted": {"type": "muted", "by": "par_x7"},
    "waiting_room": {
        "type": "waiting_room",
        "clients": [
            {
                "id": "p_7kq2",
                "verification": "email_code",
                "name": "Anna",
                "verified": "anna@example.eu",
                "returning": True,
            },
            {
                "id": "p_9xx1",
                "verification": "anonymous",
                "name": None,
                "verified": "Anonym K7QF",
                "returning": False,
            },
            {
                "id": "p_3abc",
                "verification": "none",
                "name": "Bo",
                "verified": None,
                "returning": False,
            },
        ],
    },
    "recording": {
        "type": "recording",
        "recording_id": "rec_2kd9",
        "state": "stopped",
        "requested_by": "p_1dr",
        "accepted": ["p_1dr", "p_7kq2"],
        "waiting_for": [],
        "reason": "withdrawn",
        "by": "p_7kq2",
    },
}


@pytest.mark.parametrize("name", sorted(CLIENT_SAMPLES))
def test_client_round_trip(name: str) -> None:
    sample = CLIENT_SAMPLES[name]
    msg = p.parse(json.dumps(sample))
    assert msg.type == name
    assert json.loads(p.dump(msg)) == sample
    assert p.parse(p.dump(msg)) == msg
    assert p.parse(json.dumps(sample).encode("utf-8")) == msg


@pytest.mark.parametrize("name", sorted(SERVER_SAMPLES))
def test_server_round_trip(name: str) -> None:
    sample = SERVER_SAMPLES[name]
    msg = p.parse_server(json.dumps(sample))
    assert msg.type == name
    assert json.loads(p.dump(msg)) == sample
    assert p.parse_server(p.dump(msg)) == msg


def test_every_message_type_has_a_sample() -> None:
    assert set(CLIENT_SAMPLES) == set(p.CLIENT_MESSAGES)
    assert set(SERVER_SAMPLES) == set(p.SERVER_MESSAGES)


def test_typed_values() -> None:
    cand = p.parse(json.dumps(CLIENT_SAMPLES["candidate"]))
    assert cand == p.Candidate(candidate=CANDIDATE, sdpMid="0", sdpMLineIndex=0)
    assert not cand.end_of_candidates
    joined = p.parse_server(json.dumps(SERVER_SAMPLES["joined"]))
    assert isinstance(joined, p.Joined)
    assert joined.participants == (
        p.ParticipantInfo(
            "par_abc", "practitioner", "Dr. Ørsted", True, False, video_blocked=True, quality="fair"
        ),
    )
    # An older page sends no blocked flags and no quality: false and "unknown".
    old = p.parse('{"type":"media_state","audio":true,"video":false}')
    assert old == p.MediaState(audio=True, video=False)
    assert (old.quality, old.audio_only) == ("unknown", False)


def test_optional_fields_may_be_absent_or_null() -> None:
    assert p.parse('{"type":"join"}') == p.Join(name=None)
    assert p.parse('{"type":"join","name":null}') == p.Join()
    end = p.parse('{"type":"candidate","candidate":""}')
    assert isinstance(end, p.Candidate) and end.end_of_candidates
    assert end == p.Candidate("", None, None)
    err = p.parse_server('{"type":"error","code":"not_joined","message":"join first"}')
    assert err == p.Error("not_joined", "join first", None)


def test_dump_is_compact_and_keeps_unicode() -> None:
    text = p.dump(p.Chat(text="blåbær", id="1"))
    assert text == '{"type":"chat","text":"blåbær","id":"1"}'
    assert p.dump(p.Pong()) == '{"type":"pong"}'


def test_client_and_server_types_are_separate() -> None:
    with pytest.raises(ProtocolError) as info:
        p.parse(json.dumps(SERVER_SAMPLES["welcome"]))
    assert info.value.code == "unknown_type"
    with pytest.raises(ProtocolError) as info:
        p.parse_server(json.dumps(CLIENT_SAMPLES["hello"]))
    assert info.value.code == "unknown_type"
    with pytest.raises(ProtocolError):  # server chat has other fields than client chat
        p.parse(json.dumps(SERVER_SAMPLES["chat"]))


# --- bad input -------------------------------------------------------------------------------


def code_of(raw: str | bytes) -> str:
    with pytest.raises(ProtocolError) as info:
        p.parse(raw)
    assert info.value.fault == "protocol"
    return info.value.code


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "not json",
        "{",
        '{"type":"ping"} trailing',
        '{"type":"ping","n":NaN}',
        '{"type":"ping","n":Infinity}',
        '{"type":"ping","type":"leave"}',
        b"\xff\xfe{}",
        b'{"type":"join","name":"\xc3"}',
        "[" * 100_000,
        '{"type":"ping","n":' + "9" * 5000 + "}",
        "[]",
        '"ping"',
        "null",
        "42",
    ],
)
def test_bad_json(raw: str | bytes) -> None:
    assert code_of(raw) == "bad_json"


@pytest.mark.parametrize("raw", ["{}", '{"type":null}', '{"type":1}', '{"type":["ping"]}'])
def test_bad_type(raw: str) -> None:
    assert code_of(raw) == "bad_type"


@pytest.mark.parametrize("kind", ["", "PING", "welcome", "subscribe", "x" * 500])
def test_unknown_type(kind: str) -> None:
    assert code_of(json.dumps({"type": kind})) == "unknown_type"


@pytest.mark.parametrize(
    "msg",
    [
        {"type": "ping", "extra": 1},
        {"type": "leave", "reason": "bye"},
        {"type": "hello", "v": 1},
        {"type": "hello", "token": "t"},
        {"type": "hello", "v": "1", "token": "t"},
        {"type": "hello", "v": True, "token": "t"},
        {"type": "hello", "v": 1.0, "token": "t"},
        {"type": "hello", "v": 1, "token": None},
        {"type": "hello", "v": 1, "token": "t" * 8193},
        {"type": "join", "name": "n" * 65},
        {"type": "join", "name": "ø" * 33},  # 66 UTF-8 bytes
        {"type": "join", "name": 5},
        {"type": "join", "name": "\ud800"},
        {"type": "offer"},
        {"type": "offer", "sdp": "x" * 65537},
        {"type": "offer", "sdp": ["v=0"]},
        {"type": "answer", "sdp": {"sdp": "v=0"}},
        {"type": "candidate"},
        {"type": "candidate", "candidate": "c" * 1025},
        {"type": "candidate", "candidate": "c", "sdpMid": 0},
        {"type": "candidate", "candidate": "c", "sdpMLineIndex": "0"},
        {"type": "candidate", "candidate": "c", "sdpMLineIndex": -1},
        {"type": "candidate", "candidate": "c", "sdp_mid": "0"},
        {"type": "chat", "text": "hi"},
        {"type": "chat", "text": "hi", "id": "i" * 65},
        {"type": "chat", "text": "x" * 65537, "id": "1"},
        {"type": "media_state", "audio": 1, "video": 0},
        {"type": "media_state", "audio": True},
        {"type": "media_state", "audio": True, "video": False, "video_blocked": "yes"},
        {"type": "media_state", "audio": True, "video": False, "screen": 1},
        {"type": "media_state", "audio": True, "video": True, "quality": "excellent"},
        {"type": "media_state", "audio": True, "video": True, "quality": None},
        {"type": "media_state", "audio": True, "video": True, "audio_only": "yes"},
        {"type": "set_screen_share", "allowed": "clients"},
        {"type": "set_screen_share"},
    ],
)
def test_bad_field(msg: dict[str, Any]) -> None:
    assert code_of(json.dumps(msg)) == "bad_field"


def test_limits_are_inclusive() -> None:
    p.parse(json.dumps({"type": "offer", "sdp": "x" * p.SDP_MAX}))
    p.parse(json.dumps({"type": "join", "name": "n" * p.NAME_MAX}))
    p.parse(json.dumps({"type": "candidate", "candidate": "c" * p.CANDIDATE_MAX}))


@pytest.mark.parametrize("v", [0, 2, 99])
def test_unsupported_version(v: int) -> None:
    assert code_of(json.dumps({"type": "hello", "v": v, "token": "t"})) == "unsupported_version"


def test_bad_server_fields() -> None:
    bad = dict(SERVER_SAMPLES["joined"], participants=[dict(PARTICIPANT, role="admin")])
    with pytest.raises(ProtocolError) as info:
        p.parse_server(json.dumps(bad))
    assert info.value.code == "bad_field"
    with pytest.raises(ProtocolError):
        p.parse_server(json.dumps(dict(SERVER_SAMPLES["joined"], participants=[1])))
    with pytest.raises(ProtocolError):
        p.parse_server(json.dumps(dict(SERVER_SAMPLES["welcome"], limits=[])))


def test_error_message_does_not_echo_values() -> None:
    with pytest.raises(ProtocolError) as info:
        p.parse(json.dumps({"type": "join", "name": "<script>" * 20}))
    assert "<script>" not in str(info.value)


# --- properties ------------------------------------------------------------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=400) | st.binary(max_size=400))
def test_parse_raises_only_protocol_error_on_arbitrary_input(raw: str | bytes) -> None:
    try:
        p.parse(raw)
    except ProtocolError:
        pass


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(sorted(p.CLIENT_MESSAGES)),
    st.dictionaries(
        st.sampled_from(
            [
                "v",
                "token",
                "name",
                "sdp",
                "candidate",
                "sdpMid",
                "sdpMLineIndex",
                "text",
                "id",
                "audio",
                "video",
                "x",
            ]
        ),
        json_values,
        max_size=5,
    ),
)
def test_parse_of_typed_objects_round_trips_or_raises(kind: str, fields: dict[str, Any]) -> None:
    try:
        msg = p.parse(json.dumps({"type": kind, **fields}))
    except ProtocolError as exc:
        assert exc.code in {"bad_field", "unsupported_version"}
    else:
        assert p.parse(p.dump(msg)) == msg


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=200), st.text(max_size=64))
def test_chat_round_trip(text: str, ident: str) -> None:
    try:
        msg = p.parse(json.dumps({"type": "chat", "text": text, "id": ident}))
    except ProtocolError as exc:  # lone surrogates or ids over 64 UTF-8 bytes
        assert exc.code == "bad_field"
    else:
        assert msg == p.Chat(text=text, id=ident)
        assert p.parse(p.dump(msg)) == msg


@pytest.mark.parametrize(
    "raw",
    [
        '{"type":"admit"}',
        '{"type":"admit","participant_id":5}',
        '{"type":"deny","participant_id":"' + "x" * 65 + '"}',
        '{"type":"deny","participant_id":"p_1","reason":"no"}',
    ],
)
def test_bad_admit_and_deny(raw: str) -> None:
    assert code_of(raw) == "bad_field"


def test_waiting_room_client_fields_are_checked() -> None:
    for client in (
        {"id": "p_1", "verification": "sms"},
        {"id": "p_1"},
        {"id": "p_1", "verification": "none", "verified": "x" * 321},
    ):
        with pytest.raises(ProtocolError) as info:
            p.parse_server(json.dumps({"type": "waiting_room", "clients": [client]}))
        assert info.value.code == "bad_field"
