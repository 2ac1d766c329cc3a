"""What invites and e-mail codes say, and the :class:`Mailer` port that sends them. Pure.

Messages carry no health data and no client identity beyond the recipient address. An invite
names the practitioner (their display name, so that the client knows who invites them), the
appointment in the practice's local time with its zone, how the client will verify, and comes
with an .ics calendar entry; a code e-mail carries only the code. Danish and English. The SMTP
implementation is :class:`fortrolig.signaling.smtp.SmtpMailer`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol
from zoneinfo import ZoneInfo

from fortrolig.core.errors import FortroligError

from .appointments import human_time, ics_event


class EmailFailed(FortroligError):
    """The SMTP server could not be reached or refused the message (a server-side fault)."""

    code = "email_failed"
    status = 503


@dataclass(frozen=True, slots=True)
class Attachment:
    """A file sent with a message."""

    filename: str
    content_type: str  # "text/calendar; method=PUBLISH"
    data: bytes


class Mailer(Protocol):
    """Sends one plain-text message (and its attachments); raises :class:`EmailFailed`."""

    async def send(
        self, to: str, subject: str, body: str, attachments: Sequence[Attachment] = ()
    ) -> None: ...


@dataclass(frozen=True, slots=True)
class InviteDetails:
    """What an invite e-mail says besides its link."""

    url: str
    expires_at: float
    zone: ZoneInfo
    verification: str  # "email_code" | "anonymous" | "eid"
    practitioner: str | None = None  # the practitioner's display name
    appointment: float | None = None  # unix seconds
    uid: str = ""  # the calendar entry's id (the consultation's)
    now: float = 0.0


_HOW = {
    "email_code": (
        "Du bekræfter, hvem du er, med en engangskode, som vi sender til denne e-mailadresse.",
        "You confirm who you are with a one-time code that we send to this e-mail address.",
    ),
    "eid": (
        "Du bekræfter, hvem du er, med MitID.",
        "You confirm who you are with MitID.",
    ),
    "anonymous": (
        "Du deltager anonymt: du skal ikke oplyse, hvem du er.",
        "You take part anonymously: you do not need to say who you are.",
    ),
}


def invite_email(d: InviteDetails) -> tuple[str, str, list[Attachment]]:
    """Subject, body and attachments (an .ics entry when there is an appointment) of an invite."""
    who_da = f"{d.practitioner} har inviteret dig" if d.practitioner else "Du er inviteret"
    who_en = f"{d.practitioner} has invited you" if d.practitioner else "You are invited"
    when_da = when_en = ""
    if d.appointment is not None:
        when_da = f"Tidspunkt: {human_time(d.appointment, d.zone, 'da')}.\n"
        when_en = f"Time: {human_time(d.appointment, d.zone, 'en')}.\n"
    how_da, how_en = _HOW.get(d.verification, _HOW["email_code"])
    subject = "Invitation til videokonsultation / Invitation to a video consultation"
    body = (
        f"{who_da} til en videokonsultation.\n{when_da}{how_da}\n"
        f"Åbn linket for at deltage; du venter, til du bliver lukket ind:\n\n{d.url}\n\n"
        "Du kan bruge linket igen, hvis du forlader konsultationen, indtil den er slut; "
        f"det udløber {human_time(d.expires_at, d.zone, 'da')}. Del det ikke med andre.\n\n"
        "---\n\n"
        f"{who_en} to a video consultation.\n{when_en}{how_en}\n"
        f"Open the link to join; you wait until you are let in:\n\n{d.url}\n\n"
        "You can use the link again if you leave, until the consultation is over; it expires "
        f"{human_time(d.expires_at, d.zone, 'en')}. Do not share it.\n"
    )
    attachments: list[Attachment] = []
    if d.appointment is not None:
        title = "Videokonsultation / Video consultation"
        if d.practitioner:
            title += f" – {d.practitioner}"
        ics = ics_event(
            uid=f"{d.uid or 'consultation'}@fortrolig",
            start=d.appointment,
            now=d.now,
            summary=title,
            description=f"{how_da}\n{how_en}\n\n{d.url}",
            url=d.url,
        )
        attachments.append(Attachment("konsultation.ics", "text/calendar; method=PUBLISH", ics))
    return subject, body, attachments


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
