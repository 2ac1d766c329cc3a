"""Helpers shared by the test suites (unit, integration, e2e)."""
