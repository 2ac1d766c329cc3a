"""Practitioner accounts and subscriptions: identity, login, second factor, access gate."""
