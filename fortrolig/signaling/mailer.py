"""Sending invites and e-mail codes over SMTP (stdlib ``smtplib`` in a worker thread).

``smtplib`` rather than an asyncio SMTP client: no extra dependency for a handful of messages per
consultation, and STARTTLS with the default certificate checks comes with the standard library.
Each message opens its own connection (``asyncio.to_thread``), so a slow server delays only the
request that sends, never the event loop. Messages carry no health data and no client identity
beyond the recipient address: a link or a code, in Danish and English.
"""

from __future__ import annotations

import asyncio
import logging
import smtplib
import ssl
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Protocol

from fortrolig.core.config import SmtpConfig
from fortrolig.core.errors import FortroligError

log = logging.getLogger(__name__)


class EmailFailed(FortroligError):
    """The SMTP server could not be reached or refused the message (a server-side fault)."""

    code = "email_failed"
    status = 503


class Mailer(Protocol):
    """Sends one plain-text message; raises :class:`EmailFailed`."""

    async def send(self, to: str, subject: str, body: str) -> None: ...


class SmtpMailer:
    """A :class:`Mailer` over SMTP as configured (``smtp.*``)."""

    def __init__(self, config: SmtpConfig, password: str | None = None) -> None:
        if not config.enabled:
            raise ValueError("smtp.host is not set")
        self._config = config
        self._password = password
        self.sent = 0
        self.failed = 0

    async def send(self, to: str, subject: str, body: str) -> None:
        msg = EmailMessage()
        msg["From"] = self._config.from_address
        msg["To"] = to
        msg["Subject"] = subject
        msg["Date"] = formatdate(localtime=False, usegmt=True)
        msg["Message-ID"] = make_msgid(domain=self._config.from_address.partition("@")[2])
        msg["Auto-Submitted"] = "auto-generated"
        msg.set_content(body, charset="utf-8")
        try:
            await asyncio.to_thread(self._send, msg)
        except (smtplib.SMTPException, OSError) as exc:
            self.failed += 1
            # The recipient is personal data: log the failure class only.
            log.error("sending e-mail failed: %s", type(exc).__name__)
            raise EmailFailed("the e-mail could not be sent") from None
        self.sent += 1

    def _send(self, msg: EmailMessage) -> None:
        cfg = self._config
        with smtplib.SMTP(cfg.host, cfg.port, timeout=cfg.timeout_s) as smtp:
            smtp.ehlo()
            if cfg.starttls:
                smtp.starttls(context=ssl.create_default_context())
                smtp.ehlo()
            if cfg.username and self._password is not None:
                smtp.login(cfg.username, self._password)
            smtp.send_message(msg)


def invite_email(url: str, expires_at: str) -> tuple[str, str]:
    """Subject and body of an invite; ``url`` is the single-use link."""
    subject = "Invitation til videokonsultation / Invitation to a video consultation"
    body = (
        "Du er inviteret til en videokonsultation.\n"
        f"Åbn linket for at bekræfte, hvem du er, og deltage:\n\n{url}\n\n"
        f"Linket virker én gang og udløber {expires_at}. Del det ikke med andre.\n\n"
        "---\n\n"
        "You are invited to a video consultation.\n"
        f"Open the link to confirm who you are and join:\n\n{url}\n\n"
        f"The link works once and expires {expires_at}. Do not share it.\n"
    )
    return subject, body


def code_email(code: str, minutes: int) -> tuple[str, str]:
    """Subject and body of an e-mail one-time code."""
    subject = "Din engangskode / Your one-time code"  # not the code: lock-screen previews
    body = (
        f"Din engangskode er {code}. Den gælder i {minutes} minutter.\n"
        "Hvis du ikke har bedt om den, kan du se bort fra denne e-mail.\n\n"
        "---\n\n"
        f"Your one-time code is {code}. It is valid for {minutes} minutes.\n"
        "If you did not ask for it, you can ignore this e-mail.\n"
    )
    return subject, body
