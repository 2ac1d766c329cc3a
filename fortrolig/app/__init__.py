"""Fortrolig app package."""
