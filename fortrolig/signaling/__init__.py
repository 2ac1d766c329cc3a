"""Fortrolig signaling package."""
