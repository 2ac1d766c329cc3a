"""Fortrolig web package."""
