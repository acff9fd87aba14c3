"""Mail: composing MIME from templates (compose) and handing it to SMTP or a capture (transport)."""
