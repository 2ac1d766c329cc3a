"""Typed JSON messages: frozen dataclasses checked field by field on the way in.

Shared by the signaling wire protocol (:mod:`fortrolig.signaling.protocol`) and the media
worker channel (:mod:`fortrolig.media.worker_schema`), so that both sides of every process
boundary parse the same way: UTF-8 JSON objects only, no NaN/Infinity, no duplicate keys (JSON
parsers disagree on which one wins), unknown fields refused, every field checked against its
type hint and its metadata (``max_len`` in UTF-8 bytes, ``range`` for integers, ``choices``).
Every problem is a :class:`~fortrolig.core.errors.ProtocolError` with a stable code
(``bad_json``, ``bad_type``, ``bad_field``). Standard library only.
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from collections.abc import Iterable, Mapping
from typing import Any, TypeAlias

from .errors import ProtocolError

CODE_MAX = 64
"""How much of an offending name an error message quotes."""

_FieldSpec: TypeAlias = tuple[dataclasses.Field[Any], Any, bool]
"""A field, its resolved type hint, and whether it is required on the wire."""


def load_object(raw: str | bytes) -> dict[str, Any]:
    """``raw`` as a JSON object; ``bad_json`` for anything else."""
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes | bytearray) else raw
        data = json.loads(text, parse_constant=_reject_constant, object_pairs_hook=_unique_pairs)
    except (ValueError, TypeError, RecursionError):  # UnicodeDecodeError is a ValueError
        raise ProtocolError("message is not valid UTF-8 JSON", code="bad_json") from None
    if not isinstance(data, dict):
        raise ProtocolError("message is not a JSON object", code="bad_json")
    return data


def pop_type(data: dict[str, Any]) -> str:
    """Remove and return the message's ``type`` tag (``bad_type`` when missing or not text)."""
    kind = data.pop("type", None)
    if not isinstance(kind, str):
        raise ProtocolError("message needs a string 'type'", code="bad_type")
    return kind


def to_json(obj: Any) -> Any:
    """A dataclass (nested dataclasses, tuples) as plain JSON values."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_json(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, tuple | list):
        return [to_json(item) for item in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        raise ValueError("non-finite number in a message")
    return obj


def dumps(body: Mapping[str, Any]) -> str:
    """Compact JSON text (UTF-8 kept as is, NaN refused)."""
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def bad(where: str, problem: str) -> ProtocolError:
    """The ``bad_field`` error naming where in the message the problem is."""
    return ProtocolError(f"{where}: {problem}", code="bad_field")


class Schema:
    """Builds instances of a fixed set of dataclasses from parsed JSON, checking every field.

    Type hints are resolved once here (they are strings under ``from __future__ import
    annotations``). ``max_items`` bounds every list; ``text_max`` is the default string limit
    (UTF-8 bytes) for fields without ``max_len``; ``int_range`` the default integer range.
    """

    def __init__(
        self,
        classes: Iterable[type[Any]],
        *,
        max_items: int,
        text_max: int,
        int_range: tuple[int, int] = (-(2**53), 2**53),
    ) -> None:
        self._specs: dict[type[Any], tuple[_FieldSpec, ...]] = {
            cls: _field_specs(cls) for cls in classes
        }
        self._max_items = max_items
        self._text_max = text_max
        self._int_range = int_range

    def build(self, cls: type[Any], data: Mapping[str, Any], where: str) -> Any:
        """An instance of ``cls`` from ``data``; ``bad_field`` naming the first problem."""
        specs = self._specs[cls]
        unknown = sorted(set(data) - {f.name for f, _, _ in specs})
        if unknown:
            raise bad(where, f"unknown field {unknown[0][:CODE_MAX]!r}")
        kwargs = {}
        for f, hint, required in specs:
            if f.name not in data:
                if required:
                    raise bad(where, f"missing field {f.name!r}")
                continue
            kwargs[f.name] = self._check(f"{where}.{f.name}", hint, f.metadata, data[f.name])
        return cls(**kwargs)

    def _check(self, where: str, hint: Any, meta: Mapping[str, Any], value: object) -> Any:
        origin, args = typing.get_origin(hint), typing.get_args(hint)
        if origin in (typing.Union, types.UnionType):
            if value is None:
                return None
            (inner,) = (arg for arg in args if arg is not type(None))
            return self._check(where, inner, meta, value)
        if hint is bool:
            if not isinstance(value, bool):
                raise bad(where, "expected a boolean")
            return value
        if hint is int:
            return self._check_int(where, meta, value)
        if hint is float:
            # JSON has one number type: an integer is a float here; NaN and infinities are not
            # JSON (the reader refuses them), so a finite number is all that can arrive.
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise bad(where, "expected a number")
            return float(value)
        if hint is str:
            return self._check_str(where, meta, value)
        if origin is tuple:
            if not isinstance(value, list) or len(value) > self._max_items:
                raise bad(where, f"expected a list of at most {self._max_items} items")
            return tuple(self._check(f"{where}[]", args[0], {}, item) for item in value)
        if origin is dict:
            if not isinstance(value, dict):
                raise bad(where, "expected an object")
            return value
        if isinstance(value, dict) and dataclasses.is_dataclass(hint):
            return self.build(typing.cast(type[Any], hint), value, where)
        raise bad(where, "wrong type")

    def _check_int(self, where: str, meta: Mapping[str, Any], value: object) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad(where, "expected an integer")
        lo, hi = meta.get("range", self._int_range)
        if not lo <= value <= hi:
            raise bad(where, f"must be in {lo}..{hi}")
        return value

    def _check_str(self, where: str, meta: Mapping[str, Any], value: object) -> str:
        if not isinstance(value, str):
            raise bad(where, "expected a string")
        max_len: int = meta.get("max_len", self._text_max)
        try:
            too_long = len(value) > max_len or len(value.encode("utf-8")) > max_len
        except UnicodeEncodeError:  # a lone surrogate escaped as \ud800
            raise bad(where, "not valid Unicode") from None
        if too_long:
            raise bad(where, f"longer than {max_len} bytes")
        choices = meta.get("choices")
        if choices is not None and value not in choices:
            raise bad(where, f"must be one of {', '.join(choices)}")
        return value


def _field_specs(cls: type[Any]) -> tuple[_FieldSpec, ...]:
    hints = typing.get_type_hints(cls)
    return tuple(
        (f, hints[f.name], f.default is f.default_factory is dataclasses.MISSING)
        for f in dataclasses.fields(cls)
    )


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _unique_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        raise ValueError("duplicate key")
    return result
