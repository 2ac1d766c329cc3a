"""Fortrolig recording package."""
