"""The one request-body reader: whole bodies, the limit, truncated and ill-formed bodies."""

from __future__ import annotations

import pytest

from fortrolig.core.errors import BadRequest, PayloadTooLarge
from fortrolig.core.http_body import (
    MAX_JSON_DEPTH,
    check_json_depth,
    json_depth,
    loads_object,
    only_fields,
    read_body,
    read_json_object,
)


class Stream:
    """Hands out the body in the given pieces, at most ``n`` bytes per read (like aiohttp)."""

    def __init__(self, pieces: list[bytes], fail_after: bool = False) -> None:
        self._pieces = list(pieces)
        self._fail_after = fail_after

    async def read(self, n: int = -1) -> bytes:
        if not self._pieces:
            if self._fail_after:
                raise ConnectionResetError("Connection lost")
            return b""
        piece = self._pieces.pop(0)
        if 0 <= n < len(piece):
            self._pieces.insert(0, piece[n:])
            piece = piece[:n]
        return piece


class Request:
    def __init__(self, pieces: list[bytes], length: int | None, fail_after: bool = False):
        self._content = Stream(pieces, fail_after)
        self._length = length
        self._body: bytes | None = None

    @property
    def content_length(self) -> int | None:
        return self._length

    async def read(self) -> bytes:
        """The whole body, read once and kept (like aiohttp's ``Request.read``)."""
        if self._body is None:
            raw = bytearray()
            while chunk := await self._content.read(7):
                raw += chunk
            self._body = bytes(raw)
        return self._body


async def test_a_body_arriving_in_pieces_is_read_whole() -> None:
    body = b'{"a": "' + b"x" * 100 + b'"}'
    request = Request([body[:3], body[3:50], body[50:]], len(body))
    assert await read_json_object(request, 200) == {"a": "x" * 100}


async def test_exactly_the_limit_is_allowed_one_byte_more_is_too_large() -> None:
    assert await read_body(Request([b"x" * 10], 10), 10) == b"x" * 10
    with pytest.raises(PayloadTooLarge) as declared:
        await read_body(Request([b"x" * 11], 11), 10)
    with pytest.raises(PayloadTooLarge) as chunked:  # no Content-Length (chunked)
        await read_body(Request([b"x" * 6, b"x" * 6], None), 10)
    assert declared.value.code == chunked.value.code == "too_large"
    assert declared.value.status == 413


@pytest.mark.parametrize(
    "request_",
    [
        Request([b'{"a": 1'], 20),  # shorter than its Content-Length
        Request([b'{"a": 1'], 20, fail_after=True),  # the connection was lost
        Request([b'{"a": 1'], None),  # ill-formed
        Request([b"[1, 2]"], None),  # not an object
        Request([b"\xff\xfe"], None),  # not UTF-8
    ],
)
async def test_truncated_or_ill_formed_bodies_are_bad_json(request_: Request) -> None:
    with pytest.raises(BadRequest) as err:
        await read_json_object(request_, 100)
    assert err.value.code == "bad_json" and err.value.status == 400


async def test_an_empty_body_is_an_empty_object_unless_refused() -> None:
    assert await read_json_object(Request([], 0), 10) == {}
    with pytest.raises(BadRequest) as err:
        await read_json_object(Request([], 0), 10, allow_empty=False)
    assert err.value.code == "bad_json"


def test_unknown_fields_are_named() -> None:
    only_fields({"a": 1}, {"a", "b"})
    with pytest.raises(BadRequest, match=r"\['c', 'd'\]") as err:
        only_fields({"a": 1, "d": 2, "c": 3}, {"a"})
    assert err.value.code == "bad_field"


def test_depth_counts_brackets_outside_strings_only() -> None:
    assert json_depth(b'{"a": [1, {"b": "[[[[\\"{{"}]}') == 3
    assert json_depth(b"[" * 8000 + b"]" * 8000) == 8000
    assert json_depth(b"") == json_depth(b'"]]]"') == 0


@pytest.mark.parametrize("opener", [b"[", b'{"a":'])
def test_nesting_beyond_the_limit_is_bad_json_before_any_parse(opener: bytes) -> None:
    closer = b"]" if opener == b"[" else b"}"
    at_limit = b"{" + b'"a":' + b"[" * (MAX_JSON_DEPTH - 1) + b"]" * (MAX_JSON_DEPTH - 1) + b"}"
    assert loads_object(at_limit) == {"a": loads_object(at_limit)["a"]}
    deep = b'{"a":' + opener * 8000 + closer * 8000 + b"}"
    with pytest.raises(BadRequest) as err:
        check_json_depth(deep)
    assert err.value.code == "bad_json"
    with pytest.raises(BadRequest) as parsed:
        loads_object(deep)
    assert parsed.value.code == "bad_json"
