"""Reading WebRTC statistics without pinning one browser build's spelling.

Browsers name the negotiated SRTP protection profile in ``RTCTransportStats.srtpCipher``, and the
spelling has changed between builds: Chromium up to 155 said ``AEAD_AES_256_GCM`` (RFC 7714's
profile name), Chromium 156 says ``SRTP_AEAD_AES_256_GCM`` (the IANA registry's name, which is also
what OpenSSL and aiortc use). Both mean the same profile; every test reads the profile through
:func:`srtp_profile`, so a new spelling is handled here once and anything else still fails.
"""

from __future__ import annotations

AES_256_GCM = "AEAD_AES_256_GCM"
"""The canonical name of the only profile Fortrolig negotiates (RFC 7714, section 14.2)."""

# Canonical name of each profile the IANA "DTLS-SRTP Protection Profiles" registry lists.
_PROFILES = frozenset(
    {
        "AES128_CM_HMAC_SHA1_80",
        "AES128_CM_HMAC_SHA1_32",
        "NULL_HMAC_SHA1_80",
        "NULL_HMAC_SHA1_32",
        "AEAD_AES_128_GCM",
        AES_256_GCM,
    }
)
_PREFIX = "SRTP_"


def srtp_profile(name: object) -> str:
    """The canonical profile name of a ``srtpCipher`` value (``SRTP_`` prefix or not).

    Raises ``ValueError`` for anything that names no known profile: missing, empty, not a
    string, or an unknown name. A test asserting AES-256-GCM then fails on AES-128 as before.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"no SRTP profile reported: {name!r}")
    canonical = name.upper().removeprefix(_PREFIX)
    if canonical not in _PROFILES:
        raise ValueError(f"unknown SRTP profile {name!r}")
    return canonical


def is_aes_256_gcm(name: object) -> bool:
    """Whether ``name`` (a ``srtpCipher`` value) is AEAD_AES_256_GCM in any known spelling."""
    try:
        return srtp_profile(name) == AES_256_GCM
    except ValueError:
        return False
