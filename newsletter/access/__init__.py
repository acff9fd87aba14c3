"""Who may use the machine interfaces: bearer tokens for the JSON API and /metrics.

Stored hashed, shown once.
"""
