"""A collaborator that exists only while a resource is open, passed at construction.

Some collaborators are opened by the composition root after the objects that use them are built
(an eID client needs an HTTP session, which lives in a ``cleanup_ctx``; the subscription gate
needs the accounts database). Rather than have the root set an attribute on the user later, the
user takes a :class:`Slot` when it is constructed, and the root fills the slot when the resource
opens and empties it when it closes. The user asks the slot each time it needs the collaborator
(empty: the feature is off, or not open yet).
"""

from __future__ import annotations

from typing import Generic, TypeVar

T = TypeVar("T")


class Slot(Generic[T]):
    """Holds one collaborator, or nothing."""

    __slots__ = ("_value",)

    def __init__(self, value: T | None = None) -> None:
        self._value = value

    def get(self) -> T | None:
        """The collaborator, or None while the slot is empty."""
        return self._value

    def fill(self, value: T) -> None:
        """Put the collaborator in (when its resource opens)."""
        self._value = value

    def empty(self) -> None:
        """Take it out (when its resource closes)."""
        self._value = None
