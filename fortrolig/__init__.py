"""Fortrolig: teleconsultation server (signaling, SFU, encrypted journal)."""
