"""Reading the relying party's credentials from private files (I/O; not part of the pure
eID modules). The composition root calls :func:`load_client_auth` once at start-up."""

from __future__ import annotations

from fortrolig.core.config import EidConfig, read_private_file, read_secret_file

from .client_auth import ClientAuth, private_key_jwt_from_pem, secret_basic_from_bytes


def load_client_auth(config: EidConfig) -> ClientAuth:
    """Read the client credentials that ``config`` names (private files only, see
    :func:`fortrolig.core.config.read_private_file`)."""
    if config.client_auth == "client_secret_basic":
        assert config.client_secret_file is not None  # checked by EidConfig
        return secret_basic_from_bytes(read_secret_file(config.client_secret_file))
    assert config.private_key_file is not None  # checked by EidConfig
    pem = read_private_file(config.private_key_file, "eid private key file")
    return private_key_jwt_from_pem(pem, config.private_key_alg)
