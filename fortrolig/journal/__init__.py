"""Fortrolig journal package."""
