"""Fortrolig core package."""
