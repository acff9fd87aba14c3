"""Mail providers' feedback webhooks: verifying each one and reading its events.

One module a provider (Amazon SES through SNS, Postmark, Mailgun, SendGrid); each turns a
verified payload into :class:`newsletter.inbound.events.ProviderEvent` values, which
newsletter/inbound/processing.py acts on like mail.
"""
