"""Consultations as appointments: local times with the zone named, the .ics entry, the invite
e-mail's contents, the state from the room, and the practitioner's list."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from fortrolig.core.errors import ConfigError, FortroligError
from fortrolig.signaling.appointments import (
    ConsultationState,
    human_time,
    ics_event,
    state_of,
    time_zone,
)
from fortrolig.signaling.invites import parse_consultation_request
from fortrolig.signaling.mailer import InviteDetails, invite_email
from tests.unit.signaling.test_invites import EMAIL, NOW, World, world  # noqa: F401

CPH = ZoneInfo("Europe/Copenhagen")
WINTER = datetime(2026, 12, 8, 13, 0, tzinfo=UTC).timestamp()  # 14:00 CET
SUMMER = datetime(2026, 6, 9, 12, 30, tzinfo=UTC).timestamp()  # 14:30 CEST


def test_times_are_local_with_the_zone_named() -> None:
    assert human_time(WINTER, CPH, "da") == "tirsdag 8. december 2026 kl. 14:00 (CET)"
    assert human_time(WINTER, CPH, "en") == "Tuesday 8 December 2026, 14:00 (CET)"
    assert human_time(SUMMER, CPH, "da") == "tirsdag 9. juni 2026 kl. 14:30 (CEST)"
    assert human_time(WINTER, ZoneInfo("Europe/Helsinki"), "en").endswith("15:00 (EET)")
    with pytest.raises(ConfigError):
        time_zone("Mars/Olympus_Mons")


def test_the_state_follows_the_room() -> None:
    assert state_of(closed=False, joined=0, waiting=0) is ConsultationState.SCHEDULED
    assert state_of(closed=False, joined=0, waiting=1) is ConsultationState.WAITING
    assert state_of(closed=False, joined=1, waiting=1) is ConsultationState.IN_SESSION
    assert state_of(closed=True, joined=2, waiting=0) is ConsultationState.ENDED


def unfold(ics: bytes) -> list[str]:
    text = ics.decode("utf-8")
    assert text.endswith("\r\n") and "\n" not in text.replace("\r\n", "")
    assert all(len(line.encode()) <= 75 for line in text.split("\r\n"))
    return text.replace("\r\n ", "").split("\r\n")


def test_the_ics_entry_is_rfc5545() -> None:
    lines = unfold(
        ics_event(
            uid="con_1@fortrolig",
            start=WINTER,
            now=NOW,
            summary="Videokonsultation – Mette Hansen, cand.psych.",
            description="Åbn linket; du venter; " + "ø" * 80,
            url="https://f.example.eu/invite#" + "a" * 43,
        )
    )
    assert lines[0] == "BEGIN:VCALENDAR" and lines[-2] == "END:VCALENDAR" and lines[-1] == ""
    fields: dict[str, str] = {}
    for line in lines:  # the first of each name (the alarm repeats DESCRIPTION)
        if ":" in line:
            fields.setdefault(*line.split(":", 1))
    assert fields["DTSTART"] == "20261208T130000Z" and fields["DTEND"] == "20261208T135000Z"
    assert fields["UID"] == "con_1@fortrolig" and fields["METHOD"] == "PUBLISH"
    assert fields["SUMMARY"] == "Videokonsultation – Mette Hansen\\, cand.psych."
    assert fields["DESCRIPTION"].startswith("Åbn linket\\; du venter\\; ø")
    assert fields["URL"].endswith("#" + "a" * 43)


def test_the_invite_email_names_the_practitioner_the_local_time_and_how_to_verify() -> None:
    details = InviteDetails(
        url="https://f.example.eu/invite#secret",
        expires_at=WINTER + 86_400,
        zone=CPH,
        verification="eid",
        practitioner="Mette Hansen",
        appointment=WINTER,
        uid="con_1",
        now=NOW,
    )
    subject, body, attachments = invite_email(details)
    assert "Mette" not in subject  # lock-screen previews show the subject
    assert "Mette Hansen har inviteret dig" in body and "Mette Hansen has invited you" in body
    assert "tirsdag 8. december 2026 kl. 14:00 (CET)" in body
    assert "Tuesday 8 December 2026, 14:00 (CET)" in body
    assert "MitID" in body and "UTC" not in body
    assert "works once" not in body and "use the link again" in body
    (ics,) = attachments
    assert ics.filename.endswith(".ics") and ics.content_type.startswith("text/calendar")
    assert "DTSTART:20261208T130000Z" in ics.data.decode()
    # Without an appointment or a name: no calendar entry, no name.
    _, body, attachments = invite_email(
        InviteDetails(url="u", expires_at=WINTER, zone=CPH, verification="email_code")
    )
    assert attachments == [] and "Du er inviteret" in body and "one-time code" in body


async def test_a_scheduled_consultation_is_listed_with_its_state_and_mailed_with_ics(
    world: World,  # noqa: F811
) -> None:
    when = NOW + 7 * 86_400
    body: dict[str, Any] = {
        "verification": "email_code",
        "client_email": EMAIL,
        "send_invite": True,
        "scheduled_at": when,
        "journal_client_id": "cli_anna",
    }
    made, invite = await world.service.create_consultation(
        "dr-a", parse_consultation_request(body, NOW)
    )
    # A link sent a week ahead still works on the day: it expires ttl after the appointment.
    assert invite.expires_at == int(when + 3600)
    assert world.mailer.attached[-1][0].filename.endswith(".ics")
    other, _ = await world.service.create_consultation(
        "dr-a", parse_consultation_request({"verification": "anonymous"}, NOW)
    )
    await world.service.create_consultation(
        "dr-b", parse_consultation_request({"verification": "anonymous"}, NOW)
    )
    listed = await world.service.list_consultations("dr-a")
    assert [x.consultation.id for x in listed] == [made.id, other.id]  # latest appointment first
    assert listed[0].consultation.scheduled_at == when
    assert listed[0].consultation.journal_client_id == "cli_anna"
    assert {x.state for x in listed} == {ConsultationState.SCHEDULED}
    mine = await world.service.list_consultations("dr-a", journal_client_id="cli_anna")
    assert [x.consultation.id for x in mine] == [made.id]
    by_room = await world.service.list_consultations("dr-a", room_id=other.room_id)
    assert [x.consultation.id for x in by_room] == [other.id]
    await world.service.signaling.end_room(other.room_id, "ended")
    ended = await world.service.list_consultations("dr-a", room_id=other.room_id)
    assert ended[0].state is ConsultationState.ENDED


async def test_an_unknown_journal_client_is_refused_and_nothing_is_made(world: World) -> None:  # noqa: F811
    async def only_anna(owner: str, client_id: str) -> bool:
        return (owner, client_id) == ("dr-a", "cli_anna")

    world.service._client_exists = only_anna
    req = parse_consultation_request({"verification": "eid", "journal_client_id": "cli_x"}, NOW)
    with pytest.raises(FortroligError) as info:
        await world.service.create_consultation("dr-a", req)
    assert info.value.code == "journal_client_not_found"
    assert await world.service.list_consultations("dr-a") == []
