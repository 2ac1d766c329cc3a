"""Password hashing (Argon2id, argon2-cffi) and the password policy. Pure: no I/O.

Hashes are PHC strings (``$argon2id$v=19$m=…,t=…,p=…$salt$hash``), so each carries its own
parameters: raising :data:`DEFAULT_PARAMETERS` later makes :meth:`PasswordHasher.needs_rehash`
true for older hashes, and the service rehashes them at the next successful login.

Hashing is CPU- and memory-bound and runs in worker threads (argon2-cffi releases the GIL); the
service bounds how many run at once, so a burst of logins cannot exhaust memory.
"""

from __future__ import annotations

import secrets
import unicodedata
from dataclasses import dataclass
from typing import Final

import argon2
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from fortrolig.core.errors import BadRequest

MIN_PASSWORD_CHARS: Final = 12
MAX_PASSWORD_CHARS: Final = 256
"""Long enough for any passphrase or manager-generated password; bounds the work per request."""
MIN_LOCAL_PART_CHECK: Final = 3
"""An e-mail local part shorter than this is not looked for in the password (``a@x.dk``)."""


@dataclass(frozen=True, slots=True)
class Argon2Parameters:
    """Argon2id cost parameters: ``memory_kib`` KiB of memory, ``time_cost`` passes, lanes."""

    time_cost: int
    memory_kib: int
    parallelism: int
    hash_len: int = 32
    salt_len: int = 16

    def meets_baseline(self) -> bool:
        """True when at least the OWASP baseline: m = 19 MiB, t = 2, p = 1."""
        return (
            self.memory_kib >= BASELINE.memory_kib
            and self.time_cost >= BASELINE.time_cost
            and self.parallelism >= BASELINE.parallelism
            and self.hash_len >= 32
            and self.salt_len >= 16
        )


BASELINE: Final = Argon2Parameters(time_cost=2, memory_kib=19 * 1024, parallelism=1)
"""The floor production parameters must reach (OWASP Password Storage Cheat Sheet)."""
DEFAULT_PARAMETERS: Final = Argon2Parameters(time_cost=3, memory_kib=64 * 1024, parallelism=1)
"""RFC 9106's second recommendation with one lane: ~150 ms and 64 MiB per hash here."""
INSECURE_TEST_PARAMETERS: Final = Argon2Parameters(time_cost=1, memory_kib=64, parallelism=1)
"""Fast, far below the baseline: for tests only (the service refuses them unless told)."""


class WeakPassword(BadRequest):
    """The new password does not meet the policy; the message says which rule."""

    code = "weak_password"


class PasswordHasher:
    """Argon2id hashing and verification with fixed parameters."""

    def __init__(self, parameters: Argon2Parameters = DEFAULT_PARAMETERS) -> None:
        self._parameters = parameters
        self._hasher = argon2.PasswordHasher(
            time_cost=parameters.time_cost,
            memory_cost=parameters.memory_kib,
            parallelism=parameters.parallelism,
            hash_len=parameters.hash_len,
            salt_len=parameters.salt_len,
            type=argon2.Type.ID,
        )

    @property
    def parameters(self) -> Argon2Parameters:
        """The parameters new hashes use."""
        return self._parameters

    def hash(self, password: str) -> str:
        """Return the PHC string of a fresh salted Argon2id hash of ``password``."""
        return self._hasher.hash(_canonical(password))

    def verify(self, password_hash: str, password: str) -> bool:
        """True if ``password`` matches; False for a mismatch or a malformed/foreign hash."""
        try:
            return self._hasher.verify(password_hash, _canonical(password))
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, password_hash: str) -> bool:
        """True when the hash was made with other parameters (or another Argon2 type)."""
        try:
            return self._hasher.check_needs_rehash(password_hash)
        except InvalidHashError:
            return True

    def dummy_hash(self) -> str:
        """A hash of a random password, to verify against when the e-mail is unknown.

        Verifying against it costs what a real verification costs, so the response time does not
        tell whether an account exists.
        """
        return self.hash(secrets.token_urlsafe(24))


def _canonical(password: str) -> str:
    # The same passphrase typed on two keyboards may arrive composed or decomposed.
    return unicodedata.normalize("NFC", password)


def check_password_policy(password: str, email: str) -> None:
    """Raise :class:`WeakPassword` unless ``password`` is acceptable for ``email``.

    Rules: 12 to 256 characters (after NFC normalisation), not a common password, and not
    containing the e-mail's local part (case-insensitively, for local parts of 3+ characters).
    """
    text = _canonical(password)
    if len(text) < MIN_PASSWORD_CHARS:
        raise WeakPassword(f"password must be at least {MIN_PASSWORD_CHARS} characters")
    if len(text) > MAX_PASSWORD_CHARS:
        raise WeakPassword(f"password must be at most {MAX_PASSWORD_CHARS} characters")
    folded = text.casefold()
    if folded in COMMON_PASSWORDS or _squeezed(folded) in COMMON_PASSWORDS:
        raise WeakPassword("password is too common")
    local = email.partition("@")[0].casefold()
    if len(local) >= MIN_LOCAL_PART_CHECK and local in folded:
        raise WeakPassword("password must not contain the e-mail address")


def _squeezed(folded: str) -> str:
    """Without spaces, so "correct horse battery staple" matches its joined form too."""
    return "".join(folded.split())


# Common passwords of 12+ characters (shorter ones fail the length rule anyway), from public
# breach-frequency lists, plus Danish/Nordic favourites. Compared after casefolding.
COMMON_PASSWORDS: Final = frozenset(
    {
        "123456789012",
        "1234567890123",
        "12345678901234",
        "123456789000",
        "111111111111",
        "000000000000",
        "123123123123",
        "112233445566",
        "qwertyuiopas",
        "qwertyuiop123",
        "qwerty123456",
        "1q2w3e4r5t6y",
        "1qaz2wsx3edc",
        "qazwsxedcrfv",
        "zaq12wsxcde3",
        "asdfghjkl123",
        "password1234",
        "password12345",
        "password123456",
        "passwordpassword",
        "password123!",
        "password1234!",
        "p@ssw0rd1234",
        "p@ssword1234",
        "passw0rd1234",
        "adminadmin123",
        "administrator",
        "administrator1",
        "welcome12345",
        "welcome123456",
        "letmein12345",
        "iloveyou1234",
        "sunshine1234",
        "football1234",
        "baseball1234",
        "princess1234",
        "starwars1234",
        "trustno1trustno1",
        "changeme1234",
        "changemenow!",
        "correcthorsebatterystaple",
        "abcdefghijkl",
        "abcdefgh1234",
        "abc123abc123",
        "abcd1234abcd",
        "aa123456789a",
        "1234qwerasdf",
        "1234567890qwerty",
        "qwerty12345678",
        "q1w2e3r4t5y6",
        "mypassword123",
        "secretpassword",
        "supersecret123",
        "masterpassword",
        "default12345",
        "computer1234",
        "internet1234",
        "whatever1234",
        "summer2023!!",
        "summer20242024",
        "winter2024!!",
        "sommer2024!!",
        "vinter2024!!",
        "efterår2024!",
        "forår2024!!!",
        "kodeord12345",
        "kodeord123456",
        "adgangskode1",
        "adgangskode12",
        "adgangskode123",
        "hemmeligt123",
        "hemmelighed1",
        "danmark12345",
        "danmark123456",
        "københavn123",
        "kobenhavn123",
        "copenhagen123",
        "passord12345",
        "lösenord1234",
        "losenord1234",
        "salasana1234",
        "psykolog1234",
        "psykologi123",
        "psychologist1",
        "psychology123",
        "therapist123",
        "terapeut1234",
        "fortrolig123",
        "fortrolig1234",
        "teleconsultation",
        "consultation1",
        "practitioner1",
    }
)
