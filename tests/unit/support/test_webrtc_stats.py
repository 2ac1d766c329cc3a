"""The test suite's SRTP profile reader accepts each spelling of a profile and nothing else."""

from __future__ import annotations

import pytest

from tests.support.webrtc_stats import AES_256_GCM, is_aes_256_gcm, srtp_profile


@pytest.mark.parametrize(
    "reported", ["AEAD_AES_256_GCM", "SRTP_AEAD_AES_256_GCM", "srtp_aead_aes_256_gcm"]
)
def test_both_spellings_of_aes_256_gcm_are_one_profile(reported: str) -> None:
    assert srtp_profile(reported) == AES_256_GCM
    assert is_aes_256_gcm(reported)


@pytest.mark.parametrize(
    "reported",
    ["AES128_CM_HMAC_SHA1_80", "SRTP_AES128_CM_HMAC_SHA1_80", "AEAD_AES_128_GCM"],
)
def test_other_profiles_are_recognised_but_are_not_aes_256_gcm(reported: str) -> None:
    assert srtp_profile(reported) != AES_256_GCM
    assert not is_aes_256_gcm(reported)


@pytest.mark.parametrize(
    "reported", [None, "", 7, "AES_256_GCM", "SRTP_", "SRTP_AEAD_AES_256_GCM_X", "TLS_AES_256"]
)
def test_missing_empty_or_unknown_names_are_refused(reported: object) -> None:
    with pytest.raises(ValueError):
        srtp_profile(reported)
    assert not is_aes_256_gcm(reported)
