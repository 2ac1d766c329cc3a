"""The record of processing activities (GDPR art. 30) generated from the node's configuration.

Pure: :func:`build_record` maps a :class:`~fortrolig.core.config.Config` to a document, and
:func:`render_markdown` lays it out. It lives in the composition root because only here is it
known what the node wires together: which stores, relays, brokers and TURN servers are configured.
Everything is read from the configuration (nothing about a deployment is hard-coded); what the
configuration cannot know (the controller, the billing and hosting providers, how long backup
files are kept) comes from the ``[privacy]`` section and is shown as a placeholder naming its key
when unset. Host names are given without user names or passwords.

Document ``fortrolig.processing_record`` version 1::

    {"format", "version", "generated_at", "node": {"region", "allowed_regions",
     "allowed_region_prefixes", "public_url"}, "controller": {...}, "data_categories": [...],
     "purposes": [...], "retention": [...], "recipients": [...], "security_measures": [...],
     "transfers": str}
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from fortrolig.core.config import Config
from fortrolig.core.config_rules import REGION_PREFIXES

FORMAT = "fortrolig.processing_record"
VERSION = 1
FORMATS = ("json", "md")


def _declared(value: str, key: str) -> dict[str, Any]:
    """A ``[privacy]`` value, or a placeholder naming the key to set."""
    return {"value": value or None, "config_key": f"privacy.{key}"}


def database_location(url: str, default_file: Path) -> str:
    """Where a store lives: ``SQLite file …`` or ``PostgreSQL host:port/db`` (no credentials)."""
    if not url:
        return f"SQLite file {default_file}"
    if url.startswith("sqlite://"):
        return f"SQLite file {url.removeprefix('sqlite://')}"
    parts = urlsplit(url)
    port = f":{parts.port}" if parts.port else ""
    return f"PostgreSQL {parts.hostname or '(local socket)'}{port}{parts.path}"


def _stores(config: Config) -> dict[str, str]:
    data = config.server.data_dir
    return {
        "journal": database_location(config.journal.database_url, data / "journal.db"),
        "records": database_location(config.records.database_url, data / "records.db"),
        "accounts": database_location(config.accounts.database_url, data / "accounts.db"),
    }


def _host_of(url: str) -> str:
    """``host[:port]`` of a URL, or of a ``turn:``/``stun:`` URI (RFC 7064/7065)."""
    scheme, _, rest = url.partition(":")
    if rest.startswith("//"):
        parts = urlsplit(url)
        port = f":{parts.port}" if parts.port else ""
        return f"{parts.hostname}{port}"
    return rest.split("?", 1)[0] or scheme


def _node(config: Config) -> dict[str, Any]:
    regions = config.coordination.default_regions or (config.server.region,)
    return {
        "region": config.server.region,
        "allowed_regions": list(regions),
        "allowed_region_prefixes": list(REGION_PREFIXES),
        "public_url": config.server.base_url,
    }


def _controller(config: Config) -> dict[str, Any]:
    p = config.privacy
    return {
        "name": _declared(p.controller_name, "controller_name"),
        "address": _declared(p.controller_address, "controller_address"),
        "contact": _declared(p.controller_contact, "controller_contact"),
        "dpo_contact": _declared(p.dpo_contact, "dpo_contact"),
    }


def _category(
    ident: str, name: str, subjects: str, where: str, protection: str, **extra: Any
) -> dict[str, Any]:
    return {
        "id": ident,
        "name": name,
        "data_subjects": subjects,
        "where": where,
        "protection": protection,
        "special_category": extra.pop("special", False),
        "collected": extra.pop("collected", True),
        **extra,
    }


def _categories(config: Config) -> list[dict[str, Any]]:
    """What the node stores, by category (the rest: :func:`_unstored_categories`)."""
    stores = _stores(config)
    journal, records, accounts = stores["journal"], stores["records"], stores["accounts"]
    eid = config.eid
    cpr = "; CPR numbers (eid.allow_cpr)" if eid.enabled and eid.allow_cpr else "; no CPR numbers"
    eid_text = f"; eID name and pseudonymous subject (join tokens only){cpr}" if eid.enabled else ""
    sealed = "AES-256-GCM under per-client data keys, wrapped by the journal keyring"
    cats = [
        _category(
            "identity",
            "identity",
            "clients, practitioners",
            f"client names: journal ({journal}); practitioners: accounts ({accounts})",
            f"client names {sealed}; passwords Argon2id; TOTP secrets AES-256-GCM",
            detail=f"client name; practitioner name and e-mail{eid_text}",
        ),
        _category(
            "contact",
            "contact details",
            "clients",
            f"journal ({journal}); consultations ({records})",
            "AES-256-GCM (journal and records keyrings)",
            detail="client e-mail, phone or address as the practitioner enters them",
        ),
        _category(
            "health_notes",
            "health data: session notes and addenda",
            "clients",
            f"journal ({journal})",
            sealed,
            special=True,
            detail="notes are append-only; corrections are addenda",
        ),
        _category(
            "audit",
            "audit log",
            "clients (by pseudonymous id), practitioners, operators",
            f"journal ({journal})",
            "append-only, HMAC-SHA256 hash chain; free-text hold reasons sealed per client",
            detail="actor id, action, client id, note id, purpose code, time",
        ),
        _recordings_category(config, journal),
    ]
    return cats + _unstored_categories(config)


def _recordings_category(config: Config, journal: str) -> dict[str, Any]:
    if not config.media.recording:
        return _category(
            "recordings",
            "consultation recordings",
            "clients, practitioners",
            "not made: media.recording is off",
            "would be streaming AES-256-GCM under keys wrapped by the client's data key",
            special=True,
            collected=False,
        )
    return _category(
        "recordings",
        "consultation recordings (video and sound), made only when every participant consents",
        "clients, practitioners",
        f"journal ({journal}); while a recording runs, ciphertext files in "
        f"{config.server.data_dir / 'recordings'}",
        "streaming AES-256-GCM (AES256_GCM_HKDF_4KB) under a key per recording, wrapped by "
        "the client's data key (erased with the journal); consent steps in the audit chain",
        special=True,
        detail="each participant's consent, the consultation, duration and the files",
    )


def _unstored_categories(config: Config) -> list[dict[str, Any]]:
    """Data that passes through the node, is not collected, or depends on billing."""
    accounts = _stores(config)["accounts"]
    cats = [
        _category(
            "media_in_transit",
            "audio, video and chat of consultations",
            "clients, practitioners",
            "memory of the media node only (forwarded, never stored)"
            + ("; relayed by the TURN servers" if config.media.turn_urls else ""),
            "DTLS-SRTP AEAD_AES_256_GCM; chat relayed over the signaling connection (TLS)",
            special=True,
        ),
        _category(
            "connection",
            "connection data: IP addresses",
            "clients, practitioners",
            "access log (paths only, no query strings); login throttling; ICE in memory",
            "in the operator's log store (the node keeps no log file of its own)",
        ),
    ]
    if config.billing.enforced:
        cats.append(
            _category(
                "subscription",
                "subscription and billing state",
                "practitioners",
                f"accounts ({accounts})",
                "webhook authenticated by HMAC-SHA256",
            )
        )
    return cats


def _purposes(config: Config) -> list[dict[str, Any]]:
    purposes = [
        {
            "purpose": "teleconsultation: waiting room, video, audio and chat",
            "legal_basis": "art. 6(1)(b); art. 9(2)(h) (controller to confirm)",
            "categories": ["identity", "contact", "media_in_transit"],
        },
        {
            "purpose": "patient record keeping required by law",
            "legal_basis": "art. 6(1)(c); art. 9(2)(h) (controller to confirm)",
            "categories": ["identity", "contact", "health_notes"],
        },
        {
            "purpose": "security and accountability: who accessed which record",
            "legal_basis": "art. 6(1)(c), art. 32 (controller to confirm)",
            "categories": ["audit"],
        },
    ]
    if config.eid.enabled:
        purposes.append(
            {
                "purpose": "verifying the client's identity with national eID",
                "legal_basis": "art. 6(1)(c) (controller to confirm)",
                "categories": ["identity"],
            }
        )
    if config.billing.enforced:
        purposes.append(
            {
                "purpose": "subscription billing of practitioners",
                "legal_basis": "art. 6(1)(b) (controller to confirm)",
                "categories": ["subscription"],
            }
        )
    return purposes


def _retention(config: Config) -> list[dict[str, Any]]:
    j, p = config.journal, config.privacy
    backups = (
        f"{p.backup_retention_days} days (declared)"
        if p.backup_retention_days
        else "not declared (set privacy.backup_retention_days)"
    )
    return [
        {
            "data": "journal (notes, client names and contacts)",
            "period": f"{j.retention_years} years after the latest note, unless on hold; "
            f"then erased by crypto-shredding (checked every {j.retention_interval_s:g} s)",
            "config_key": "journal.retention_years",
        },
        {
            "data": "audit log",
            "period": "as long as the journal database: entries are never deleted; an erased "
            "client's entries keep only its pseudonymous id and sealed text nobody can open",
            "config_key": None,
        },
        {
            "data": "backups of the journal",
            "period": backups,
            "config_key": "privacy.backup_retention_days",
        },
        {
            "data": "recordings",
            "period": "with the client's journal: erased with it (crypto-shredding)"
            if config.media.recording
            else "none are made (media.recording is off)",
            "config_key": None,
        },
        {
            "data": "invites and e-mail codes",
            "period": f"invites valid {config.invites.ttl_s} s, codes 600 s; "
            "both purged an hour after they close",
            "config_key": "invites.ttl_s",
        },
        {
            "data": "pending eID logins",
            "period": f"{config.eid.pending_ttl_s:g} s"
            if config.eid.enabled
            else "none (eID not configured)",
            "config_key": "eid.pending_ttl_s",
        },
        {
            "data": "media and chat",
            "period": "not stored (in memory while forwarded)",
            "config_key": None,
        },
    ]


def _recipient(role: str, where: str | None, purpose: str, **extra: Any) -> dict[str, Any]:
    return {"role": role, "where": where, "purpose": purpose, **extra}


def _recipients(config: Config) -> list[dict[str, Any]]:
    stores = _stores(config)
    out = [
        _recipient(
            "journal database",
            stores["journal"],
            "health notes, client identity and contact, audit log",
        ),
        _recipient(
            "records database",
            stores["records"],
            "consultations, invites, client contact (sealed)",
        ),
        _recipient(
            "accounts database",
            stores["accounts"],
            "practitioner accounts and subscriptions",
        ),
    ]
    return out + _services(config)


def _services(config: Config) -> list[dict[str, Any]]:
    """The configured services outside the node that see personal data (or could)."""
    p, out = config.privacy, []
    if config.coordination.redis_url:
        out.append(
            _recipient(
                "coordination (Redis)",
                _host_of(config.coordination.redis_url),
                "node registry and room placement; no personal data",
            )
        )
    if config.smtp.enabled:
        out.append(
            _recipient(
                "SMTP relay",
                f"{config.smtp.host}:{config.smtp.port}",
                "invite links and e-mail codes to clients' addresses",
            )
        )
    if config.eid.enabled:
        out.append(
            _recipient(
                "eID broker", _host_of(config.eid.issuer), "client identity verification (OIDC)"
            )
        )
    if config.billing.enforced:
        out.append(
            _recipient(
                "billing provider",
                p.billing_provider or None,
                "practitioner subscriptions",
                config_key="privacy.billing_provider",
            )
        )
    for url in config.media.turn_urls:
        out.append(_recipient("TURN relay", _host_of(url), "relays encrypted media (SRTP)"))
    for url in config.media.stun_urls:
        out.append(_recipient("STUN server", _host_of(url), "sees participants' addresses"))
    if p.hosting_provider:
        out.append(
            _recipient(
                "hosting provider",
                p.hosting_provider,
                "runs the nodes",
                config_key="privacy.hosting_provider",
            )
        )
    return out


def _transport(config: Config) -> str:
    s = config.server
    if s.tls:
        return (
            f"TLS 1.2+ served by the node (certificate {s.tls_cert_file}); HSTS "
            f"{s.hsts_max_age_s} s"
        )
    if s.trusted_proxies:
        return (
            f"TLS terminated by the reverse proxies {', '.join(s.trusted_proxies)}; "
            f"public URL {s.base_url}"
        )
    if s.base_url.startswith("https://"):
        return f"TLS in front of the node (public URL {s.base_url})"
    return "plain HTTP, loopback only (development; refused for other addresses)"


def _security(config: Config) -> list[str]:
    measures = [
        "journal notes, addenda, client names and contacts: AES-256-GCM under per-client data "
        "keys wrapped by a key-encryption key (keyring file, mode 0600); erasure is "
        "crypto-shredding",
        "consultation contact details and eID login secrets: AES-256-GCM (records keyring)",
        "practitioner passwords Argon2id; second factor TOTP (secrets AES-256-GCM sealed)",
        "media: DTLS-SRTP restricted to AEAD_AES_256_GCM (peers that cannot do it are refused)",
        f"transport: {_transport(config)}",
        "audit log: append-only, HMAC-SHA256 hash chain (fortrolig audit verify)",
        "backups: streaming AES-256-GCM under a separate backup key, never with the keyring",
    ]
    if config.media.turn_urls:
        measures.append(f"TURN: ephemeral credentials valid {config.media.turn_credential_ttl_s} s")
    if not config.media.stun_urls:
        measures.append("no public STUN server is contacted")
    if config.smtp.enabled:
        smtp = "STARTTLS" if config.smtp.starttls else "local relay without TLS (loopback)"
        measures.append(f"e-mail: {smtp}; e-mails carry only links or codes")
    if config.coordination.redis_url:
        tls = config.coordination.redis_url.startswith("rediss://")
        measures.append("Redis over TLS" if tls else "Redis without TLS: private network only")
    return measures


def build_record(config: Config, generated_at: str) -> dict[str, Any]:
    """The record of processing activities for ``config`` (``generated_at``: ISO 8601 UTC)."""
    return {
        "format": FORMAT,
        "version": VERSION,
        "generated_at": generated_at,
        "node": _node(config),
        "controller": _controller(config),
        "data_categories": _categories(config),
        "purposes": _purposes(config),
        "retention": _retention(config),
        "recipients": _recipients(config),
        "security_measures": _security(config),
        "transfers": "none intended outside the EU/EEA: nodes accept only region tags starting "
        f"{', '.join(REGION_PREFIXES)}; check where each recipient above processes data",
    }


def _value(entry: Any) -> str:
    if isinstance(entry, dict) and "config_key" in entry and "value" in entry:
        return entry["value"] or f"_(not configured: set `{entry['config_key']}`)_"
    return str(entry)


def render_markdown(doc: dict[str, Any]) -> str:
    """The record as Markdown (for the controller's compliance folder)."""
    node, c = doc["node"], doc["controller"]
    lines = [
        "# Record of processing activities (GDPR art. 30)",
        "",
        f"Generated {doc['generated_at']} from the configuration of the node in region "
        f"`{node['region']}` (allowed regions: {', '.join(node['allowed_regions'])}; "
        f"public URL {node['public_url']}).",
        "",
        "## Controller",
        f"- Name: {_value(c['name'])}",
        f"- Address: {_value(c['address'])}",
        f"- Contact: {_value(c['contact'])}",
        f"- Data protection officer: {_value(c['dpo_contact'])}",
        "",
        "## Categories of personal data",
    ]
    for cat in doc["data_categories"]:
        flags = " (art. 9 special category)" if cat["special_category"] else ""
        state = "" if cat["collected"] else " — **not collected**"
        lines.append(
            f"- **{cat['name']}**{flags}{state}: {cat['data_subjects']}; "
            f"where: {cat['where']}; protection: {cat['protection']}"
        )
    lines += ["", "## Purposes"]
    lines += [f"- {p['purpose']} — {p['legal_basis']}" for p in doc["purposes"]]
    lines += ["", "## Retention"]
    lines += [f"- {r['data']}: {r['period']}" for r in doc["retention"]]
    lines += ["", "## Recipients and processors"]
    for r in doc["recipients"]:
        where = r["where"] or f"_(not named: set `{r['config_key']}`)_"
        lines.append(f"- {r['role']}: {where} — {r['purpose']}")
    lines += ["", "## Security measures (art. 32)"]
    lines += [f"- {m}" for m in doc["security_measures"]]
    lines += ["", "## Transfers to third countries", doc["transfers"], ""]
    return "\n".join(lines)
