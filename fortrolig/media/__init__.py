"""Fortrolig media package."""
