"""What invites and e-mail codes say, and the :class:`Mailer` port that sends them. Pure.

Messages carry no health data and no client identity beyond the recipient address: a link or a
code, in Danish and English. The SMTP implementation is
:class:`fortrolig.signaling.smtp.SmtpMailer`.
"""

from __future__ import annotations

from typing import Protocol

from fortrolig.core.errors import FortroligError


class EmailFailed(FortroligError):
    """The SMTP server could not be reached or refused the message (a server-side fault)."""

    code = "email_failed"
    status = 503


class Mailer(Protocol):
    """Sends one plain-text message; raises :class:`EmailFailed`."""

    async def send(self, to: str, subject: str, body: str) -> None: ...


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
