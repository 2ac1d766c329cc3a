"""The subscription service: the gate's use cases on top of a store and a clock.

The signaling side asks :meth:`SubscriptionService.check` (or the ``require_*`` helpers) at
session creation, join and reconnect, and :meth:`token_revoked` with a token's ``iat``. It
learns about changes in two ways: listeners (:meth:`add_listener`) are called after every change
made through this service object, and :func:`watch_changes` polls the store's change feed so
changes made elsewhere (another node, the admin CLI) arrive within its interval. Changes made by
time alone (a grace running out) are announced by ``Status.changes_at``: re-check then.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fortrolig.accounts import billing
from fortrolig.accounts import subscription as rules
from fortrolig.accounts.subscription import (
    DEFAULT_TRIAL_DAYS,
    Access,
    Change,
    Plan,
    State,
    Status,
    Subscription,
    SuspensionReason,
)
from fortrolig.accounts.subscription_store import (
    EventRecord,
    SubscriptionStore,
    UpdateResult,
    identity_hash,
    open_subscription_store,
)
from fortrolig.core.clock import Clock, SystemClock
from fortrolig.core.errors import BadRequest, Forbidden, NotFound
from fortrolig.core.principal import Principal

log = logging.getLogger(__name__)
DB_FILE = "accounts.db"

Listener = Callable[[str, Status], Awaitable[None] | None]
"""Called with (practitioner_id, status now) after a change; may be sync or async."""


class SubscriptionRequired(Forbidden):
    """The practitioner's subscription does not allow this (its reason code is in the
    message and in ``reason``)."""

    code = "subscription_required"

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class SubscriptionForbidden(Forbidden):
    """Only practitioners have a subscription."""

    code = "subscription_forbidden"


class InvalidPractitionerId(BadRequest):
    """A practitioner id is empty or too long."""

    code = "invalid_practitioner_id"


@dataclass(frozen=True, slots=True)
class EventOutcome:
    """What a webhook delivery did: applied (changed state), duplicate, or ignored (unknown)."""

    event_id: str
    event_type: str
    duplicate: bool
    applied: bool
    ignored: bool


def default_database_url(data_dir: Path) -> str:
    """SQLite ``<data_dir>/accounts.db`` (absolute), the embedded default."""
    return f"sqlite://{(data_dir / DB_FILE).resolve()}"


class SubscriptionService:
    """Use cases of the subscription gate. ``start()`` opens the store; ``close()`` closes it."""

    def __init__(
        self,
        store: SubscriptionStore,
        clock: Clock | None = None,
        *,
        webhook_secrets: Sequence[bytes] = (),
        tolerance_s: int = billing.TOLERANCE_S,
    ) -> None:
        self._store = store
        self._clock = clock or SystemClock()
        self._secrets = tuple(webhook_secrets)
        self._tolerance_s = tolerance_s
        self._listeners: list[Listener] = []

    @property
    def store(self) -> SubscriptionStore:
        """The underlying store."""
        return self._store

    async def start(self) -> None:
        """Open the store and migrate."""
        await self._store.open()

    async def close(self) -> None:
        """Close the store; idempotent."""
        await self._store.close()

    def now(self) -> datetime:
        """The clock's time as an aware UTC datetime."""
        return datetime.fromtimestamp(self._clock.now(), UTC)

    def add_listener(self, listener: Listener) -> None:
        """Call ``listener`` after every change made through this service."""
        self._listeners.append(listener)

    # --- the gate -----------------------------------------------------------------------------

    async def get(self, practitioner_id: str) -> Subscription | None:
        """The stored facts (None: no record)."""
        return await self._store.get(_pid(practitioner_id))

    async def check(self, practitioner_id: str, now: datetime | None = None) -> Status:
        """State, access and reason for the practitioner at ``now`` (default: the clock)."""
        sub = await self._store.get(_pid(practitioner_id))
        return rules.status(sub, now or self.now())

    async def require_sessions(self, practitioner_id: str) -> Status:
        """The status if it allows sessions, else :class:`SubscriptionRequired` (403)."""
        return _require(await self.check(practitioner_id), Access.SESSIONS)

    async def require_export(self, practitioner_id: str) -> Status:
        """The status if it allows journal export, else :class:`SubscriptionRequired` (403)."""
        return _require(await self.check(practitioner_id), Access.EXPORT_ONLY)

    async def token_revoked(self, practitioner_id: str, issued_at: datetime) -> bool:
        """True when a token issued at ``issued_at`` is refused because of a suspension."""
        sub = await self._store.get(_pid(practitioner_id))
        return rules.token_revoked(sub, issued_at, self.now())

    async def own_status(self, principal: Principal) -> tuple[Subscription | None, Status]:
        """The calling practitioner's own subscription and status (other roles: 403)."""
        if principal.role != "practitioner":
            raise SubscriptionForbidden("only practitioners have a subscription")
        sub = await self._store.get(_pid(principal.subject))
        return sub, rules.status(sub, self.now())

    # --- changes ------------------------------------------------------------------------------

    async def start_trial(
        self,
        practitioner_id: str,
        identity: str,
        *,
        days: int = DEFAULT_TRIAL_DAYS,
        now: datetime | None = None,
    ) -> Subscription:
        """Start a free trial; ``identity`` is the stable identity key (e-mail, eID pseudonym).

        Refused (``trial_not_allowed``) when that identity had a trial within 24 months.
        """
        pid, at = _pid(practitioner_id), now or self.now()
        if not identity.strip() or len(identity) > 512:
            raise rules.InvalidSubscriptionInput("identity must be 1..512 characters")
        return await self._change(
            pid,
            lambda sub, history: rules.start_trial(sub, pid, at, history, days=days),
            trial_identity=identity_hash(identity),
        )

    async def subscribe(
        self, practitioner_id: str, plan: Plan | str, *, start: datetime | None = None
    ) -> Subscription:
        """Subscribe to ``plan`` anchored at ``start`` (default now); nothing is paid yet."""
        pid, at = _pid(practitioner_id), self.now()
        try:
            chosen = Plan(plan)
        except ValueError:
            raise rules.InvalidSubscriptionInput("plan must be 'monthly' or 'annual'") from None
        anchor = start or at
        return await self._change(
            pid, lambda sub, _h: rules.subscribe(sub, pid, chosen, anchor, at)
        )

    async def record_payment(self, practitioner_id: str, period_start: datetime) -> Subscription:
        """Mark a period paid (what a ``payment_succeeded`` event does; for tests and tools)."""
        pid, at = _pid(practitioner_id), self.now()
        return await self._change(pid, lambda sub, _h: rules.record_payment(sub, period_start, at))

    async def cancel(self, practitioner_id: str, *, now: datetime | None = None) -> Subscription:
        """Cancel (monthly: at period end; annual: see the 14-day notice rule)."""
        pid, at = _pid(practitioner_id), now or self.now()
        return await self._change(pid, lambda sub, _h: rules.cancel(sub, at))

    async def suspend(
        self, practitioner_id: str, reason: SuspensionReason | str, *, now: datetime | None = None
    ) -> Subscription:
        """Suspend at once: sessions and exports blocked, earlier tokens refused."""
        pid, at = _pid(practitioner_id), now or self.now()
        try:
            why = SuspensionReason(reason)
        except ValueError:
            raise rules.InvalidSubscriptionInput(
                "reason must be 'non_payment' or 'misuse'"
            ) from None
        return await self._change(pid, lambda sub, _h: rules.suspend(sub, pid, why, at))

    async def lift(self, practitioner_id: str, *, now: datetime | None = None) -> Subscription:
        """Lift a suspension; access follows the dates again (tokens from before stay refused)."""
        pid, at = _pid(practitioner_id), now or self.now()
        return await self._change(pid, lambda sub, _h: rules.lift(sub, at))

    async def _change(
        self, pid: str, change: Change, *, trial_identity: str | None = None
    ) -> Subscription:
        result = await self._store.update(pid, change, trial_identity=trial_identity)
        await self._announce(pid, result)
        assert result.subscription is not None  # a non-duplicate update always has a row
        return result.subscription

    # --- webhook ------------------------------------------------------------------------------

    async def handle_webhook(self, body: bytes, signature: str | None) -> EventOutcome:
        """Verify, parse and apply one webhook delivery (typed errors: 401, 400, 409)."""
        if not self._secrets:
            # Anyone can post here: an expected answer, not a server error line per request.
            raise NotFound("no billing webhook on this node", code="webhook_not_configured")
        billing.verify_signature(
            signature, body, self._secrets, self._clock.now(), tolerance_s=self._tolerance_s
        )
        return await self.apply_event(billing.parse_event(body))

    async def apply_event(self, event: billing.BillingEvent) -> EventOutcome:
        """Apply a verified event once: a seen event id changes nothing (``duplicate``)."""
        head = event.header
        pid = billing.practitioner_of(event)
        record = EventRecord(head.id, head.type, pid, self.now())
        change = billing.transition(event)
        if change is None or pid is None:
            first = await self._store.record_event(record)
            if first:
                log.info("billing event %s of unknown type %r ignored", head.id, head.type)
            return EventOutcome(head.id, head.type, not first, applied=False, ignored=True)
        result = await self._store.update(pid, change, event=record)
        await self._announce(pid, result)
        return EventOutcome(
            head.id, head.type, result.duplicate, applied=result.changed, ignored=False
        )

    async def _announce(self, pid: str, result: UpdateResult) -> None:
        if not result.changed or not self._listeners:
            return
        await notify(self._listeners, pid, rules.status(result.subscription, self.now()))

    async def changes_since(self, seq: int) -> list[tuple[int, str]]:
        """The store's change feed after ``seq`` (see :func:`watch_changes`)."""
        return await self._store.changes_since(seq)


async def notify(listeners: Sequence[Listener], pid: str, status: Status) -> None:
    """Call every listener; one failing is logged and does not stop the others."""
    for listener in listeners:
        try:
            result = listener(pid, status)
            if inspect.isawaitable(result):
                await result
        except Exception:
            log.exception("subscription listener failed for %s", pid)


async def open_subscriptions(
    data_dir: Path,
    *,
    database_url: str | None = None,
    clock: Clock | None = None,
    webhook_secrets: Sequence[bytes] = (),
) -> SubscriptionService:
    """A started service on ``database_url`` (default SQLite ``<data_dir>/accounts.db``)."""
    store = open_subscription_store(database_url or default_database_url(data_dir))
    service = SubscriptionService(store, clock, webhook_secrets=webhook_secrets)
    try:
        await service.start()
    except BaseException:
        await service.close()
        raise
    return service


async def watch_changes(
    service: SubscriptionService, listener: Listener, *, interval_s: float = 1.0
) -> None:
    """Poll the change feed every ``interval_s`` and call ``listener`` for each changed
    practitioner, until cancelled (an app ``cleanup_ctx`` task). Starts at the current head,
    so only changes from now on are reported. A failed poll is logged and retried.
    """
    seq = await _head(service)
    while True:
        await asyncio.sleep(interval_s)
        try:
            changes = await service.changes_since(seq)
        except Exception:
            log.exception("subscription change poll failed; retrying")
            continue
        for change_seq, pid in changes:
            seq = max(seq, change_seq)
            await notify([listener], pid, await service.check(pid))


async def _head(service: SubscriptionService) -> int:
    seq = 0
    while batch := await service.changes_since(seq):
        seq = batch[-1][0]
    return seq


def _pid(practitioner_id: str) -> str:
    if not practitioner_id or len(practitioner_id) > 128 or not practitioner_id.isprintable():
        raise InvalidPractitionerId("practitioner id must be 1..128 printable characters")
    return practitioner_id


def _require(status: Status, need: Access) -> Status:
    if status.access.rank >= need.rank:
        return status
    what = "sessions" if need is Access.SESSIONS else "journal export"
    raise SubscriptionRequired(
        f"subscription does not allow {what} ({status.state.value}: {status.reason})",
        reason=status.reason,
    )


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat().replace("+00:00", "Z")


def status_json(sub: Subscription | None, status: Status) -> dict[str, Any]:
    """A subscription and its status as the practitioner sees them."""
    suspension = None if sub is None else sub.suspension
    return {
        "state": status.state.value,
        "access": status.access.value,
        "reason": status.reason,
        "until": _iso(status.until),
        "changes_at": _iso(status.changes_at),
        "plan": None if sub is None or sub.plan is None else sub.plan.value,
        "anchor": None if sub is None else _iso(sub.anchor),
        "paid_through": None if sub is None else _iso(sub.paid_through),
        "trial_end": None if sub is None else _iso(sub.trial_end),
        "ends_at": None if sub is None else _iso(sub.ends_at),
        "suspension": None
        if suspension is None
        else {"reason": suspension.reason.value, "since": _iso(suspension.since)},
    }


__all__ = [
    "Access",
    "EventOutcome",
    "State",
    "Status",
    "SubscriptionRequired",
    "SubscriptionService",
    "open_subscriptions",
    "status_json",
    "watch_changes",
]
