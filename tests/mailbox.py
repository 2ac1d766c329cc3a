"""A real SMTP server on 127.0.0.1 (aiosmtpd) that keeps what it receives, for the tests.

Started and stopped by the fixtures that use it; the node under test is pointed at it with
``FORTROLIG_SMTP__*`` (plain SMTP is allowed only to a loopback server).
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller

from tests.conftest import free_port

FROM = "noreply@fortrolig.example.eu"
LINK_RE = re.compile(r"(https?://\S+/invite#[A-Za-z0-9_-]{43})")
CODE_RE = re.compile(r"\b([0-9]{6})\b")


@dataclass
class Mail:
    """One received message."""

    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage

    @property
    def body(self) -> str:
        part = self.message.get_body(preferencelist=("plain",))
        assert part is not None
        return str(part.get_content())

    @property
    def link(self) -> str:
        found = LINK_RE.search(self.body)
        assert found, self.body
        return found.group(1)

    @property
    def code(self) -> str:
        found = CODE_RE.search(self.body)
        assert found, self.body
        return found.group(1)


class _Handler:
    def __init__(self, box: Mailbox) -> None:
        self.box = box

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        msg = message_from_bytes(envelope.content, policy=policy.default)
        assert isinstance(msg, EmailMessage)
        with self.box.lock:
            self.box.mails.append(Mail(envelope.mail_from, list(envelope.rcpt_tos), msg))
        return "250 Message accepted for delivery"


class Mailbox:
    """aiosmtpd in its own thread; ``mails`` in arrival order."""

    def __init__(self) -> None:
        self.port = free_port()
        self.mails: list[Mail] = []
        self.lock = threading.Lock()
        self._controller = Controller(_Handler(self), hostname="127.0.0.1", port=self.port)

    def start(self) -> None:
        self._controller.start()

    def stop(self) -> None:
        self._controller.stop()

    @property
    def env(self) -> dict[str, str]:
        """Environment that points a node at this server."""
        return {
            "FORTROLIG_SMTP__HOST": "127.0.0.1",
            "FORTROLIG_SMTP__PORT": str(self.port),
            "FORTROLIG_SMTP__STARTTLS": "false",
            "FORTROLIG_SMTP__FROM_ADDRESS": FROM,
        }

    def to(self, address: str) -> list[Mail]:
        with self.lock:
            return [m for m in self.mails if address in m.rcpt_tos]

    async def wait_for(self, address: str, count: int = 1, within: float = 10.0) -> Mail:
        """The ``count``-th message to ``address`` (waits for it)."""
        deadline = time.monotonic() + within
        while len(self.to(address)) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"no mail #{count} to {address} within {within} s")
            await asyncio.sleep(0.05)
        return self.to(address)[count - 1]
