"""Who may do what: console accounts, roles, passwords, TOTP, sessions and logins, and bearer
tokens for the JSON API and /metrics (owned by a user or by ops).

Secrets are stored hashed and shown once.
"""
