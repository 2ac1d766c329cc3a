"""Fortrolig loadtests package."""
