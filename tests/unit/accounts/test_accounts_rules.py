"""Pure account rules: e-mail normalisation, backoff schedule, throttle keys, refresh verdicts."""

from __future__ import annotations

import pytest

from fortrolig.accounts.practitioners import (
    BackoffPolicy,
    InvalidDisplayName,
    InvalidEmail,
    LoginThrottled,
    RefreshRecord,
    RefreshVerdict,
    counted_attempt,
    email_throttle_key,
    ip_throttle_key,
    judge_refresh,
    new_refresh_token,
    normalize_display_name,
    normalize_email,
    plausible_refresh_token,
    refresh_token_hash,
    throttle_wait,
)


def test_email_normalisation_makes_case_and_spacing_irrelevant() -> None:
    assert normalize_email("  Mette.Hansen@Klinik.DK ") == "mette.hansen@klinik.dk"
    assert normalize_email("søren@Ærø.dk") == "søren@xn--r-3fa9c.dk"  # IDNA (punycode) domain
    assert normalize_email("SØREN@ærø.DK") == normalize_email("søren@xn--r-3fa9c.dk")
    assert normalize_email("so\u0308ren@x.dk") == normalize_email("SÖREN@X.DK")


@pytest.mark.parametrize(
    "bad",
    ["", "mette", "@klinik.dk", "mette@", "mette@klinik", "a b@klinik.dk", "a@@klinik.dk",
     "a..b@klinik.dk", ".a@klinik.dk", "a@-klinik.dk", "a@klinik..dk", "a\x00@klinik.dk",
     "a<b>@klinik.dk", "x" * 65 + "@klinik.dk", "a@" + "k" * 250 + ".dk"],
)  # fmt: skip
def test_bad_emails_are_refused(bad: str) -> None:
    with pytest.raises(InvalidEmail):
        normalize_email(bad)


def test_display_names() -> None:
    assert normalize_display_name("  Mette Hansen ") == "Mette Hansen"
    for bad in ("", "   ", "x" * 101, "Mette\nHansen", "Mette\u202eHansen"):
        with pytest.raises(InvalidDisplayName):
            normalize_display_name(bad)


def test_backoff_schedule_doubles_after_five_and_caps_at_fifteen_minutes() -> None:
    policy = BackoffPolicy()
    assert [policy.delay_s(n) for n in range(1, 11)] == [0, 0, 0, 0, 1, 2, 4, 8, 16, 32]
    assert policy.delay_s(15) == 900 and policy.delay_s(10_000) == 900
    with pytest.raises(ValueError):
        BackoffPolicy(threshold=0)


def test_counter_locks_and_forgets() -> None:
    policy = BackoffPolicy()
    counter = None
    for _ in range(5):
        counter = counted_attempt(counter, policy, 1000.0)
    assert counter is not None and counter.failures == 5
    assert throttle_wait(counter, policy, 1000.0) == 1.0
    assert throttle_wait(counter, policy, 1001.0) == 0.0
    later = 1000.0 + policy.forget_after_s + 1
    assert counted_attempt(counter, policy, later).failures == 1


def test_throttled_error_rounds_up_to_whole_seconds() -> None:
    assert LoginThrottled(0.2).retry_after_s == 1
    assert LoginThrottled(2.01).retry_after_s == 3
    assert LoginThrottled(2.0).retry_after_s == 2


def test_throttle_keys() -> None:
    assert email_throttle_key("a@x.dk") == email_throttle_key("a@x.dk")
    assert "a@x.dk" not in email_throttle_key("a@x.dk")
    assert ip_throttle_key("192.0.2.7") == "login-ip:192.0.2.7"
    assert ip_throttle_key("::ffff:192.0.2.7") == "login-ip:192.0.2.7"
    assert ip_throttle_key("2001:db8:1:2:3:4:5:6") == ip_throttle_key("2001:db8:1:2::9")
    assert ip_throttle_key("2001:db8:1:2::9") == "login-ip:2001:db8:1:2::/64"
    assert ip_throttle_key("2001:db8:1:3::9") != ip_throttle_key("2001:db8:1:2::9")
    assert ip_throttle_key("fe80::1%eth0", "signup") == "signup-ip:fe80::/64"
    assert ip_throttle_key("not-an-ip") is None


def test_refresh_tokens_and_verdicts() -> None:
    token = new_refresh_token()
    assert plausible_refresh_token(token) and len(token) >= 4 + 43
    assert new_refresh_token() != token
    assert len(refresh_token_hash(token)) == 64 and token not in refresh_token_hash(token)
    assert not plausible_refresh_token("eyJhbGciOi.x.y")
    live = RefreshRecord("rf_1", "prac_1", None, 2000.0, None)
    assert judge_refresh(None, 1000.0) is RefreshVerdict.UNKNOWN
    assert judge_refresh(live, 1000.0) is RefreshVerdict.ROTATE
    assert judge_refresh(live, 2000.0) is RefreshVerdict.EXPIRED
    used = RefreshRecord("rf_1", "prac_1", 900.0, 2000.0, None)
    assert judge_refresh(used, 1000.0) is RefreshVerdict.REUSED
    revoked = RefreshRecord("rf_1", "prac_1", 900.0, 2000.0, 950.0)
    assert judge_refresh(revoked, 1000.0) is RefreshVerdict.REVOKED
