"""Consultations, invite links and client verification (docs/protocol.md, "Invites").

A practitioner creates a consultation (a room with a waiting room) for a client and chooses how
the client proves who they are: ``email_code``, ``anonymous`` (only when chosen) or ``eid``
(MitID through an OIDC broker, :mod:`fortrolig.signaling.eid`; without an ``[eid]`` section such
an invite answers ``verification_unavailable``). Redeeming an ``eid`` invite claims nothing yet:
it starts an eID login, and the invite is claimed only when the broker's callback comes back with
a verified identity (:meth:`InviteService.complete_eid`), so a failed or abandoned login leaves
the invite redeemable. The client gets a link ``/invite#<secret>``: 256 random bits of
which only the SHA-256 is stored, expiring after ``invites.ttl_s``, redeemed by POST. It works
again until it expires, is replaced by a newer one or its consultation ends, so that a client who
closed the tab can come back; every use verifies afresh. Redeeming leads to a client join token
whose ``vm``/``vn`` claims carry the verification result (and ``rt`` when the invite had been
used before: the client is returning); the client then waits in the room's waiting room until a
practitioner admits it.

Pure domain logic: no aiohttp. Storage is behind :class:`InviteStore`: a node keeps everything in
the records database (:class:`~fortrolig.signaling.records_sql.SqlInviteStore`), so a restart or
another node forgets nothing; :class:`MemoryInviteStore` keeps it in this process (unit tests).
Every refusal is a typed error with a stable code and changes nothing: the store's atomic
operations (claim an invite, take an attempt, complete a challenge) are where state changes,
and a failure after a claim (the e-mail could not be sent) releases it again.
"""

from __future__ import annotations

import dataclasses
import math
import re
import unicodedata
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from fortrolig.core.clock import Clock
from fortrolig.core.config import is_email_address
from fortrolig.core.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    FortroligError,
    NotFound,
    RateLimited,
    Unauthenticated,
)
from fortrolig.core.ids import new_id
from fortrolig.core.metrics import Sample
from fortrolig.core.slot import Slot

from . import verification as v
from .appointments import (
    ConsultationState,
    parse_journal_client,
    parse_scheduled_at,
    state_of,
    time_zone,
)
from .auth import VerificationMode
from .eid.client import EidClient, VerifiedIdentity
from .mailer import InviteDetails, Mailer, code_email, invite_email
from .protocol import NAME_MAX
from .records import RoomRecord, parse_force_relay, parse_regions
from .service import SignalingService

PHONE_RE = re.compile(r"^\+?[0-9][0-9 ()-]{3,31}$")
CONSULTATION_FIELDS = frozenset(
    {
        "verification",
        "client_name",
        "client_email",
        "client_phone",
        "send_invite",
        "max_participants",
        "regions",
        "force_relay",
        "scheduled_at",
        "journal_client_id",
    }
)


class Gone(FortroligError):
    """The thing existed but has expired or ended (HTTP 410)."""

    code = "gone"
    status = 410
    fault = "client"


class CodeInvalid(Unauthenticated):
    """A wrong e-mail code; ``details`` tells the page how many attempts are left."""

    def __init__(self, attempts_left: int) -> None:
        super().__init__("the code is not correct", code="code_invalid")
        self.details = {"attempts_left": attempts_left}


# --- records ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Consultation:
    """A consultation: its room and how its client must verify.

    An anonymous consultation keeps no client identity at all (its invite may still be e-mailed;
    the address is used for that one message and not stored).
    """

    id: str
    owner: str
    room_id: str
    verification: VerificationMode
    created_at: float
    client_name: str | None = None
    client_email: str | None = None
    client_phone: str | None = None
    scheduled_at: float | None = None  # the appointment (unix seconds), if one was set
    journal_client_id: str | None = None  # the practitioner's journal client it belongs to


@dataclass(frozen=True, slots=True)
class Invite:
    """A stored invite: only the SHA-256 of its secret.

    It works until it expires, is replaced or its consultation ends; ``redeemed_at`` is its latest
    redemption (None: never used, so whoever redeems it now is not returning).
    """

    digest: str
    consultation_id: str
    created_at: float
    expires_at: float
    redeemed_at: float | None = None
    revoked: bool = False


@dataclass(frozen=True, slots=True)
class Challenge:
    """An e-mail code in flight, named by the SHA-256 of the handle the client holds."""

    digest: str
    consultation_id: str
    salt: bytes
    code_digest: bytes
    expires_at: float
    attempts_left: int
    completed: bool = False
    returning: bool = False  # its invite had been used before (the client comes back)


@dataclass(frozen=True, slots=True)
class IssuedInvite:
    """A new invite as the practitioner receives it (the secret exists only here)."""

    url: str
    expires_at: int
    sent: bool


@dataclass(frozen=True, slots=True)
class CodeSent:
    """Redeeming an ``email_code`` invite: a code went out; verify with ``handle``."""

    handle: str
    email_hint: str
    expires_at: int
    attempts_left: int


@dataclass(frozen=True, slots=True)
class JoinGrant:
    """A verified client's join token for the consultation's room."""

    token: str
    room_id: str
    expires_at: int
    verification: VerificationMode
    verified: str | None

    @property
    def room_url(self) -> str:
        """The room page with the token in the fragment (relative: same origin)."""
        return f"/room/{self.room_id}#role=client&token={self.token}"


@dataclass(frozen=True, slots=True)
class EidRedirect:
    """Redeeming an ``eid`` invite: the browser goes to the broker's authorization URL."""

    url: str


CODE_RESEND_S = 30.0
"""Least time between two e-mail codes sent for one invite (each use of an invite sends one)."""
EID_RETURN_TO = "/invite"
"""Where an eID login started from an invite returns (the page shows errors there)."""
EID_LABEL_MAX = 64
"""UTF-8 bytes of the verified name a join token carries (the protocol's name limit)."""


def _clip_utf8(text: str, limit: int) -> str:
    encoded = text.encode("utf-8")
    if len(encoded) <= limit:
        return text
    return encoded[:limit].decode("utf-8", errors="ignore").rstrip()


def eid_label(identity: VerifiedIdentity) -> str:
    """What the practitioner sees for an eID client: the verified name (control characters
    dropped, at most 64 UTF-8 bytes), or, when the broker sent none, a short label derived from
    the pseudonymous subject. Never the CPR number."""
    name = "".join(c for c in identity.name or "" if unicodedata.category(c) != "Cc").strip()
    if name:
        return _clip_utf8(name, EID_LABEL_MAX)
    return "MitID " + v.digest(identity.subject)[:8].upper()


@dataclass(frozen=True, slots=True)
class ConsultationRequest:
    """A validated ``POST /api/v1/consultations`` body."""

    verification: VerificationMode
    client_name: str | None
    client_email: str | None
    client_phone: str | None
    send_invite: bool
    max_participants: int | None
    regions: tuple[str, ...] | None = None
    force_relay: bool = False
    scheduled_at: float | None = None
    journal_client_id: str | None = None


@dataclass(frozen=True, slots=True)
class ListedConsultation:
    """A consultation as the practitioner's list shows it."""

    consultation: Consultation
    state: ConsultationState
    max_participants: int | None


# --- storage ---------------------------------------------------------------------------------


class InviteStore(Protocol):
    """Where consultations, invites and code challenges live. The ``claim``/``take``/``complete``
    operations are atomic: of concurrent callers exactly one succeeds."""

    async def add_consultation(self, consultation: Consultation) -> None: ...

    async def consultation(self, consultation_id: str) -> Consultation | None: ...

    async def consultations_of(self, owner: str) -> list[Consultation]:
        """The owner's consultations (at most the newest 1000), latest appointment first."""
        ...

    async def add_invite(self, invite: Invite) -> None: ...

    async def invite(self, digest: str) -> Invite | None: ...

    async def claim_invite(self, digest: str, now: float, min_interval_s: float) -> Invite | None:
        """Record a redemption at ``now`` if the invite is open (not revoked or expired) and
        its latest redemption is at least ``min_interval_s`` old; answers the invite as it was
        *before* (its ``redeemed_at`` says whether it had been used), or None."""
        ...

    async def release_invite(self, digest: str, previous: float | None) -> None:
        """Undo a claim whose follow-up failed (``previous``: the redemption it replaced)."""
        ...

    async def revoke_invites(self, consultation_id: str) -> int:
        """Revoke every invite of a consultation that is not revoked yet; how many."""
        ...

    async def add_challenge(self, challenge: Challenge) -> None: ...

    async def challenge(self, digest: str) -> Challenge | None: ...

    async def take_attempt(self, digest: str, now: float) -> Challenge | None:
        """Spend one attempt of an open challenge; the challenge after it, or None if closed."""
        ...

    async def complete_challenge(self, digest: str) -> bool:
        """Mark a challenge used; False if it already was."""
        ...

    async def delete_challenge(self, digest: str) -> None: ...


class MemoryInviteStore:
    """An in-process :class:`InviteStore` (unit tests; lost on restart).

    Each operation runs without awaiting, so it is atomic on the event loop. Records are
    immutable; finished invites and challenges are purged an hour after they close.
    """

    KEEP_S = 3600.0

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._consultations: dict[str, Consultation] = {}
        self._invites: dict[str, Invite] = {}
        self._challenges: dict[str, Challenge] = {}

    async def add_consultation(self, consultation: Consultation) -> None:
        self._consultations[consultation.id] = consultation

    async def consultation(self, consultation_id: str) -> Consultation | None:
        return self._consultations.get(consultation_id)

    async def consultations_of(self, owner: str) -> list[Consultation]:
        mine = [c for c in self._consultations.values() if c.owner == owner]
        mine.sort(key=lambda c: (c.scheduled_at or c.created_at, c.created_at), reverse=True)
        return mine[:1000]

    async def add_invite(self, invite: Invite) -> None:
        self._purge()
        self._invites[invite.digest] = invite

    async def invite(self, digest: str) -> Invite | None:
        return self._invites.get(digest)

    async def claim_invite(self, digest: str, now: float, min_interval_s: float) -> Invite | None:
        found = self._invites.get(digest)
        if found is None or found.revoked or found.expires_at <= now:
            return None
        if found.redeemed_at is not None and found.redeemed_at > now - min_interval_s:
            return None
        self._invites[digest] = dataclasses.replace(found, redeemed_at=now)
        return found

    async def release_invite(self, digest: str, previous: float | None) -> None:
        found = self._invites.get(digest)
        if found is not None:
            self._invites[digest] = dataclasses.replace(found, redeemed_at=previous)

    async def revoke_invites(self, consultation_id: str) -> int:
        count = 0
        for key, found in list(self._invites.items()):
            if found.consultation_id == consultation_id and not found.revoked:
                self._invites[key] = dataclasses.replace(found, revoked=True)
                count += 1
        return count

    async def add_challenge(self, challenge: Challenge) -> None:
        self._purge()
        self._challenges[challenge.digest] = challenge

    async def challenge(self, digest: str) -> Challenge | None:
        return self._challenges.get(digest)

    async def take_attempt(self, digest: str, now: float) -> Challenge | None:
        found = self._challenges.get(digest)
        if found is None or found.completed or found.attempts_left <= 0:
            return None
        if found.expires_at <= now:
            return None
        taken = dataclasses.replace(found, attempts_left=found.attempts_left - 1)
        self._challenges[digest] = taken
        return taken

    async def complete_challenge(self, digest: str) -> bool:
        found = self._challenges.get(digest)
        if found is None or found.completed:
            return False
        self._challenges[digest] = dataclasses.replace(found, completed=True)
        return True

    async def delete_challenge(self, digest: str) -> None:
        self._challenges.pop(digest, None)

    def _purge(self) -> None:
        horizon = self._clock.now() - self.KEEP_S
        for key, found in list(self._invites.items()):
            if found.expires_at < horizon:
                del self._invites[key]
        for key, ch in list(self._challenges.items()):
            if ch.expires_at < horizon:
                del self._challenges[key]


# --- validation ------------------------------------------------------------------------------


def parse_consultation_request(data: Mapping[str, Any], now: float) -> ConsultationRequest:
    """Validate a create-consultation body; every problem is a ``BadRequest`` with its code."""
    unknown = set(data) - CONSULTATION_FIELDS
    if unknown:
        raise BadRequest(f"unknown fields: {sorted(unknown)}", code="bad_field")
    raw_mode = data.get("verification")
    if raw_mode is None:
        raise BadRequest(
            "verification is required: email_code, anonymous or eid", code="verification_required"
        )
    try:
        mode = VerificationMode(raw_mode) if isinstance(raw_mode, str) else None
    except ValueError:
        mode = None
    if mode is None:
        raise BadRequest("verification must be email_code, anonymous or eid", code="bad_field")
    name = _optional_text(data, "client_name")
    email = _optional_str(data, "client_email")
    if email is not None and not is_email_address(email):
        raise BadRequest("client_email is not an e-mail address", code="bad_email")
    phone = _optional_str(data, "client_phone")
    if phone is not None and not PHONE_RE.match(phone):
        raise BadRequest("client_phone is not a phone number", code="bad_phone")
    send = data.get("send_invite", False)
    if not isinstance(send, bool):
        raise BadRequest("send_invite must be a boolean", code="bad_field")
    size = data.get("max_participants")
    if size is not None and (not isinstance(size, int) or isinstance(size, bool)):
        raise BadRequest("max_participants must be an integer", code="bad_field")
    if send and email is None:
        raise BadRequest("send_invite needs client_email", code="client_email_required")
    if mode is VerificationMode.EMAIL_CODE and email is None:
        raise BadRequest("email_code verification needs client_email", code="client_email_required")
    if mode is VerificationMode.ANONYMOUS and (name is not None or phone is not None):
        raise BadRequest(
            "an anonymous consultation keeps no client name or phone", code="anonymous_identity"
        )
    if mode is VerificationMode.ANONYMOUS and email is not None and not send:
        raise BadRequest(
            "an anonymous consultation uses client_email only to send the invite",
            code="anonymous_identity",
        )
    regions = parse_regions(data.get("regions"))
    relay = parse_force_relay(data.get("force_relay"))
    when = parse_scheduled_at(data, now)
    journal = parse_journal_client(data)
    if mode is VerificationMode.ANONYMOUS and journal is not None:
        raise BadRequest(
            "an anonymous consultation belongs to no journal client", code="anonymous_identity"
        )
    return ConsultationRequest(mode, name, email, phone, send, size, regions, relay, when, journal)


def _optional_str(data: Mapping[str, Any], key: str) -> str | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise BadRequest(f"{key} must be a non-empty string", code="bad_field")
    return value.strip()


def _optional_text(data: Mapping[str, Any], key: str) -> str | None:
    value = _optional_str(data, key)
    if value is None:
        return None
    try:
        too_long = len(value.encode("utf-8")) > NAME_MAX
    except UnicodeEncodeError:
        raise BadRequest(f"{key} is not valid Unicode", code="bad_field") from None
    if too_long or any(unicodedata.category(c) == "Cc" for c in value):
        raise BadRequest(
            f"{key} must be at most {NAME_MAX} UTF-8 bytes without control characters",
            code="bad_field",
        )
    return value


# --- the service -----------------------------------------------------------------------------


@dataclass
class InviteCounters:
    """Totals for /metrics (no identities)."""

    consultations: int = 0
    invites_issued: int = 0
    invites_redeemed: int = 0
    codes_sent: int = 0
    codes_verified: int = 0
    codes_refused: int = 0


class InviteService:
    """Consultations, invites and verification on top of the signaling service's rooms."""

    def __init__(
        self,
        signaling: SignalingService,
        store: InviteStore,
        mailer: Mailer | None,
        clock: Clock,
        *,
        invite_ttl_s: int,
        public_url: str,
        eid: Slot[EidClient] | None = None,
        zone: str = "Europe/Copenhagen",
        practitioner_name: Callable[[str], Awaitable[str | None]] | None = None,
        client_exists: Callable[[str, str], Awaitable[bool]] | None = None,
    ) -> None:
        self.signaling = signaling
        self.zone = time_zone(zone)
        # Ports to the accounts and the journal (wired by the app; signaling imports neither):
        # the display name the invite e-mail names, and whether a journal client is the owner's.
        self._practitioner_name = practitioner_name
        self._client_exists = client_exists
        self.store = store
        self.mailer = mailer
        self.clock = clock
        self.invite_ttl_s = invite_ttl_s
        self.public_url = public_url.rstrip("/")
        # Filled while the node's eID client is open; empty: eID invites answer
        # verification_unavailable.
        self._eid: Slot[EidClient] = eid if eid is not None else Slot()
        self.counters = InviteCounters()

    @property
    def eid(self) -> EidClient | None:
        """The eID client, while one is open (None: eID is not configured)."""
        return self._eid.get()

    def samples(self) -> Iterator[Sample]:
        """Metric samples read at scrape time (counts only)."""
        c = self.counters
        for name, help_text, value in (
            ("consultations", "Consultations created", c.consultations),
            ("invites_issued", "Invite links issued", c.invites_issued),
            ("invites_redeemed", "Invite links redeemed", c.invites_redeemed),
            ("email_codes_sent", "E-mail codes sent", c.codes_sent),
            ("email_codes_verified", "E-mail codes verified", c.codes_verified),
            ("email_codes_refused", "Wrong e-mail codes", c.codes_refused),
        ):
            yield Sample(f"fortrolig_{name}_total", help_text, "counter", value)

    # -- practitioner side ------------------------------------------------------------------

    async def create_consultation(
        self, owner: str, req: ConsultationRequest
    ) -> tuple[Consultation, IssuedInvite]:
        """A consultation with its room (waiting room on) and a first invite (maybe e-mailed).

        The invite is e-mailed before anything is stored, so a failed e-mail leaves nothing.
        """
        if (req.send_invite or req.verification is VerificationMode.EMAIL_CODE) and not self.mailer:
            raise Conflict("e-mail is not configured on this node", code="email_not_configured")
        self.signaling.rooms.check_size(req.max_participants)
        self.signaling.check_force_relay(req.force_relay)
        if req.journal_client_id is not None and self._client_exists is not None:
            if not await self._client_exists(owner, req.journal_client_id):
                raise NotFound("no such journal client", code="journal_client_not_found")
        anonymous = req.verification is VerificationMode.ANONYMOUS
        consultation_id = new_id("con")
        secret, invite_url, expires_at = self._new_secret(req.scheduled_at)
        sent = False
        if req.send_invite and req.client_email is not None:
            draft = Consultation(
                consultation_id, owner, "", req.verification, 0.0, scheduled_at=req.scheduled_at
            )
            await self._send_invite(req.client_email, invite_url, expires_at, draft)
            sent = True
        room = await self.signaling.create_room(
            owner,
            req.max_participants,
            has_waiting_room=True,
            regions=req.regions,
            force_relay=req.force_relay,
        )
        consultation = Consultation(
            id=consultation_id,
            owner=owner,
            room_id=room.id,
            verification=req.verification,
            created_at=self.clock.now(),
            client_name=req.client_name,
            client_email=None if anonymous else req.client_email,
            client_phone=req.client_phone,
            scheduled_at=req.scheduled_at,
            journal_client_id=req.journal_client_id,
        )
        await self.store.add_consultation(consultation)
        await self._store_invite(consultation.id, secret, expires_at)
        self.counters.consultations += 1
        return consultation, IssuedInvite(invite_url, int(expires_at), sent)

    async def owned(self, owner: str, consultation_id: str) -> Consultation:
        """The consultation if ``owner`` created it (another's answers like a missing one)."""
        found = await self.store.consultation(consultation_id)
        if found is None or found.owner != owner:
            raise NotFound("no such consultation", code="consultation_not_found")
        return found

    async def reissue(
        self, owner: str, consultation_id: str, send: bool, email: str | None = None
    ) -> IssuedInvite:
        """A new invite for a consultation; its earlier unredeemed invites stop working."""
        consultation = await self.owned(owner, consultation_id)
        await self._room_of(consultation)
        to = consultation.client_email or email
        if send and to is None:
            raise BadRequest("no client e-mail to send the invite to", code="client_email_required")
        if send and self.mailer is None:
            raise Conflict("e-mail is not configured on this node", code="email_not_configured")
        secret, url, expires_at = self._new_secret(consultation.scheduled_at)
        if send and to is not None:
            await self._send_invite(to, url, expires_at, consultation)
        await self.store.revoke_invites(consultation.id)
        await self._store_invite(consultation.id, secret, expires_at)
        return IssuedInvite(url, int(expires_at), send)

    def _new_secret(self, scheduled_at: float | None = None) -> tuple[str, str, float]:
        """A new invite secret, its link, and its expiry: ``invites.ttl_s`` from now, or from
        the appointment when that is later (a link sent a week ahead still works on the day)."""
        secret = v.new_secret()
        start = max(self.clock.now(), scheduled_at or 0.0)
        return secret, f"{self.public_url}/invite#{secret}", start + self.invite_ttl_s

    async def _store_invite(self, consultation_id: str, secret: str, expires_at: float) -> None:
        invite = Invite(v.digest(secret), consultation_id, self.clock.now(), expires_at)
        await self.store.add_invite(invite)
        self.counters.invites_issued += 1

    async def _send_invite(
        self, to: str, url: str, expires_at: float, consultation: Consultation
    ) -> None:
        assert self.mailer is not None
        name = None
        if self._practitioner_name is not None:
            name = await self._practitioner_name(consultation.owner)
        details = InviteDetails(
            url=url,
            expires_at=expires_at,
            zone=self.zone,
            verification=consultation.verification.value,
            practitioner=name,
            appointment=consultation.scheduled_at,
            uid=consultation.id,
            now=self.clock.now(),
        )
        subject, body, attachments = invite_email(details)
        await self.mailer.send(to, subject, body, attachments)

    def options(self) -> dict[str, Any]:
        """What the new-consultation form may offer on this node."""
        modes = ["email_code"] if self.mailer is not None else []
        if self.eid is not None:
            modes.append("eid")
        modes.append("anonymous")
        return {
            "verification": modes,
            "email": self.mailer is not None,
            "max_participants": self.signaling.rooms.size_limit,
            "default_participants": self.signaling.rooms.check_size(None),
            "time_zone": self.zone.key,
        }

    async def list_consultations(
        self, owner: str, *, journal_client_id: str | None = None, room_id: str | None = None
    ) -> list[ListedConsultation]:
        """The owner's consultations, newest appointment first, each with its state (from its
        room: stored as ended, or live on this node with people in it or waiting)."""
        found = await self.store.consultations_of(owner)
        # One query for every room of the owner (a consultation's room is its owner's), not one
        # per consultation: the dashboard lists often.
        rooms = {
            r.id: r
            for r in await self.signaling.room_store.open_rooms_of(owner, include_closed=True)
        }
        listed = []
        for c in found:
            if journal_client_id is not None and c.journal_client_id != journal_client_id:
                continue
            if room_id is not None and c.room_id != room_id:
                continue
            record = rooms.get(c.room_id)
            live = self.signaling.rooms.find(c.room_id)
            state = state_of(
                closed=record is None or record.closed,
                joined=len(live.participants) + len(live.away) if live else 0,
                waiting=len(live.waiting) if live else 0,
            )
            size = record.max_participants if record is not None else None
            listed.append(ListedConsultation(c, state, size))
        return listed

    # -- client side ------------------------------------------------------------------------

    async def redeem(self, secret: object) -> CodeSent | JoinGrant | EidRedirect:
        """Redeem an invite: an anonymous join grant, an e-mail code sent, or (``eid``) the
        broker's authorization URL; an ``eid`` invite is claimed later, by :meth:`complete_eid`.

        An invite works again until it expires, is replaced or its consultation ends (a client
        who closed the tab comes back through it); each use verifies afresh and the client waits
        as returning. A new e-mail code goes out at most every :data:`CODE_RESEND_S` seconds.
        """
        if not v.is_secret(secret):
            raise BadRequest("not an invite secret", code="invite_malformed")
        assert isinstance(secret, str)
        key = v.digest(secret)
        invite = await self.store.invite(key)
        now = self.clock.now()
        self._check_open(invite, now)
        assert invite is not None
        consultation = await self._consultation(invite.consultation_id)
        room = await self._room_of(consultation)
        if consultation.verification is VerificationMode.EID:
            eid = self.eid
            if eid is None:
                raise Conflict(
                    "eID verification is not configured on this node",
                    code="verification_unavailable",
                )
            # The consultation reference is the invite's digest, never the secret.
            url, _ = await eid.start(EID_RETURN_TO, consultation_ref=key)
            return EidRedirect(url)
        emailed = consultation.verification is VerificationMode.EMAIL_CODE
        before = await self._claim(key, now, CODE_RESEND_S if emailed else 0.0)
        returning = before.redeemed_at is not None
        try:
            if consultation.verification is VerificationMode.ANONYMOUS:
                token, claims = self.signaling.issue_client_token(
                    room, VerificationMode.ANONYMOUS, v.pseudonym(), None, returning
                )
                grant = JoinGrant(
                    token, room.id, claims.exp, VerificationMode.ANONYMOUS, claims.verified
                )
                self.counters.invites_redeemed += 1
                return grant
            sent = await self._send_code(consultation, now, returning)
        except BaseException:
            await self.store.release_invite(key, before.redeemed_at)
            raise
        self.counters.invites_redeemed += 1
        return sent

    async def _claim(self, key: str, now: float, min_interval_s: float) -> Invite:
        """Record this redemption; the invite as it was before (whether it had been used)."""
        before = await self.store.claim_invite(key, now, min_interval_s)
        if before is not None:
            return before
        current = await self.store.invite(key)
        self._check_open(current, now)  # revoked or expired meanwhile
        assert current is not None
        last = current.redeemed_at
        wait = 1.0 if last is None else max(1.0, last + min_interval_s - now)
        exc = RateLimited(
            f"the invite was just used; try again in {math.ceil(wait)} s", code="invite_throttled"
        )
        exc.retry_after_s = math.ceil(wait)
        raise exc

    async def complete_eid(self, identity: VerifiedIdentity) -> JoinGrant:
        """A verified eID login came back: record the invite's use (atomically; the loser of a
        race gets ``invite_throttled``) and issue the client's join token with mode ``eid`` and
        the verified name. Only the name (or a label from the pseudonymous subject) enters the
        token."""
        key = identity.consultation_ref
        now = self.clock.now()
        invite = await self.store.invite(key)
        self._check_open(invite, now)
        assert invite is not None
        consultation = await self._consultation(invite.consultation_id)
        if consultation.verification is not VerificationMode.EID:  # pragma: no cover - refs
            raise Conflict("not an eID consultation", code="verification_unavailable")
        room = await self._room_of(consultation)
        before = await self._claim(key, now, 0.0)
        label = eid_label(identity)
        try:
            token, claims = self.signaling.issue_client_token(
                room, VerificationMode.EID, label, label, before.redeemed_at is not None
            )
        except BaseException:
            await self.store.release_invite(key, before.redeemed_at)
            raise
        self.counters.invites_redeemed += 1
        return JoinGrant(token, room.id, claims.exp, VerificationMode.EID, claims.verified)

    def _check_open(self, invite: Invite | None, now: float) -> None:
        if invite is None:
            raise NotFound("no such invite", code="invite_not_found")
        if invite.revoked:
            raise Gone("this invite was replaced by a newer one", code="invite_revoked")
        if invite.expires_at <= now:
            raise Gone("the invite has expired", code="invite_expired")

    async def _send_code(self, consultation: Consultation, now: float, returning: bool) -> CodeSent:
        email = consultation.client_email
        if email is None or self.mailer is None:  # refused at creation; config may change
            raise Conflict("e-mail is not configured on this node", code="email_not_configured")
        code, salt, handle = v.new_code(), v.new_salt(), v.new_secret()
        challenge = Challenge(
            digest=v.digest(handle),
            consultation_id=consultation.id,
            salt=salt,
            code_digest=v.code_digest(salt, code),
            expires_at=now + v.CODE_TTL_S,
            attempts_left=v.CODE_ATTEMPTS,
            returning=returning,
        )
        await self.store.add_challenge(challenge)
        subject, body = code_email(code, v.CODE_TTL_S // 60)
        try:
            await self.mailer.send(email, subject, body)
        except BaseException:
            await self.store.delete_challenge(challenge.digest)
            raise
        self.counters.codes_sent += 1
        return CodeSent(handle, v.email_hint(email), int(challenge.expires_at), v.CODE_ATTEMPTS)

    async def verify_code(self, handle: object, code: object) -> JoinGrant:
        """Check an e-mail code (constant time, one attempt spent); a join grant on success."""
        if not v.is_secret(handle):
            raise BadRequest("not a verification handle", code="verification_malformed")
        if not v.is_code(code):
            raise BadRequest("the code is six digits", code="code_malformed")
        assert isinstance(handle, str) and isinstance(code, str)
        key = v.digest(handle)
        now = self.clock.now()
        self._check_challenge(await self.store.challenge(key), now)
        taken = await self.store.take_attempt(key, now)
        if taken is None:  # closed by a concurrent attempt
            self._check_challenge(await self.store.challenge(key), now)
            raise Forbidden("no attempts left", code="code_attempts_exhausted")
        if not v.code_matches(taken.salt, taken.code_digest, code):
            self.counters.codes_refused += 1
            raise CodeInvalid(taken.attempts_left)
        if not await self.store.complete_challenge(key):
            raise Conflict("the code was already used", code="code_used")
        consultation = await self._consultation(taken.consultation_id)
        room = await self._room_of(consultation)
        token, claims = self.signaling.issue_client_token(
            room,
            VerificationMode.EMAIL_CODE,
            consultation.client_email,
            consultation.client_name,
            taken.returning,
        )
        self.counters.codes_verified += 1
        return JoinGrant(token, room.id, claims.exp, VerificationMode.EMAIL_CODE, claims.verified)

    def _check_challenge(self, challenge: Challenge | None, now: float) -> None:
        if challenge is None:
            raise NotFound("no such verification", code="verification_not_found")
        if challenge.completed:
            raise Conflict("the code was already used", code="code_used")
        if challenge.expires_at <= now:
            raise Gone("the code has expired", code="code_expired")
        if challenge.attempts_left <= 0:
            raise Forbidden("no attempts left", code="code_attempts_exhausted")

    async def _consultation(self, consultation_id: str) -> Consultation:
        found = await self.store.consultation(consultation_id)
        if found is None:  # pragma: no cover - invites and challenges outlive no consultation
            raise NotFound("no such consultation", code="consultation_not_found")
        return found

    async def _room_of(self, consultation: Consultation) -> RoomRecord:
        try:
            return await self.signaling.room_record(consultation.room_id)
        except NotFound:
            raise Gone("the consultation has ended", code="consultation_ended") from None
