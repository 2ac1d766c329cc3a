"""Encrypted, verifiable journal backups that a client's erasure still reaches."""
