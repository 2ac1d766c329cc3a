"""The pure onboarding rules: link tokens, recovery codes, mail texts."""

from __future__ import annotations

from fortrolig.accounts.onboarding import (
    confirm_email,
    link_hash,
    new_link_token,
    new_recovery_codes,
    normalize_recovery_code,
    plausible_link_token,
    recovery_hash,
    reset_email,
)


def test_link_tokens_are_fresh_plausible_and_hashed() -> None:
    a, b = new_link_token(), new_link_token()
    assert a != b and plausible_link_token(a) and plausible_link_token(b)
    assert not plausible_link_token(a[:-1]) and not plausible_link_token("flk_" + "!" * 43)
    assert link_hash(a) != link_hash(b) and a not in link_hash(a) and len(link_hash(a)) == 64


def test_recovery_codes_normalise_and_bind_to_the_account() -> None:
    codes = new_recovery_codes()
    assert len(codes) == 10 and len(set(codes)) == 10
    for code in codes:
        raw = normalize_recovery_code(code)
        assert raw is not None and len(raw) == 10
        assert normalize_recovery_code(f"  {code.upper()} ") == raw
        assert normalize_recovery_code(code.replace("-", "")) == raw
    assert normalize_recovery_code("123456") is None  # a TOTP code is never a recovery code
    assert normalize_recovery_code("abcde-fghij-k") is None
    assert normalize_recovery_code("OIL00-11111") == "01100" + "11111"  # look-alikes folded
    assert recovery_hash("prac_a", "0123456789") != recovery_hash("prac_b", "0123456789")


def test_mails_carry_the_link_in_both_languages() -> None:
    for make in (confirm_email, reset_email):
        subject, body = make("https://node.example.eu/x#flk_T")
        assert "/" in subject and body.count("https://node.example.eu/x#flk_T") == 2
    assert "30 min" in reset_email("u")[1] and "24 timer" in confirm_email("u")[1]
