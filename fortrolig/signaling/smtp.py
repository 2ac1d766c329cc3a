"""Sending invites and e-mail codes over SMTP (stdlib ``smtplib`` in a worker thread): the
adapter behind :class:`fortrolig.signaling.mailer.Mailer`.

``smtplib`` rather than an asyncio SMTP client: no extra dependency for a handful of messages per
consultation, and STARTTLS with the default certificate checks comes with the standard library.
Each message opens its own connection (``asyncio.to_thread``), so a slow server delays only the
request that sends, never the event loop.
"""

from __future__ import annotations

import asyncio
import logging
import smtplib
import ssl
from collections.abc import Sequence
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

from fortrolig.core.config import SmtpConfig

from .mailer import Attachment, EmailFailed

log = logging.getLogger(__name__)


class SmtpMailer:
    """A :class:`Mailer` over SMTP as configured (``smtp.*``)."""

    def __init__(self, config: SmtpConfig, password: str | None = None) -> None:
        if not config.enabled:
            raise ValueError("smtp.host is not set")
        self._config = config
        self._password = password
        self.sent = 0
        self.failed = 0

    async def send(
        self, to: str, subject: str, body: str, attachments: Sequence[Attachment] = ()
    ) -> None:
        msg = EmailMessage()
        msg["From"] = self._config.from_address
        msg["To"] = to
        msg["Subject"] = subject
        msg["Date"] = formatdate(localtime=False, usegmt=True)
        msg["Message-ID"] = make_msgid(domain=self._config.from_address.partition("@")[2])
        msg["Auto-Submitted"] = "auto-generated"
        msg.set_content(body, charset="utf-8")
        for a in attachments:
            kind, _, rest = a.content_type.partition(";")
            maintype, _, subtype = kind.strip().partition("/")
            params = dict(
                (k.strip(), v.strip())
                for k, _, v in (x.partition("=") for x in rest.split(";") if x)
            )
            msg.add_attachment(
                a.data, maintype=maintype, subtype=subtype, filename=a.filename, params=params
            )
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
