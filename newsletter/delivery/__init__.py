"""The send pipeline: fan-out to one delivery per reader, batches over SMTP, sent marks, recovery.

Exactly once per reader, within the global rate limit.
"""
