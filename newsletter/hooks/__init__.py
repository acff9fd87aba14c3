"""Outbound webhooks: the site's own systems (a CRM) told when something happens here.

Endpoints and their secrets, the event types and the outbox they are emitted into (in the
transaction of the change), Standard Webhooks signatures, and delivery with retries and backoff.
"""
