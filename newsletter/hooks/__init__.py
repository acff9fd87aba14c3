"""Outbound webhooks: the site's systems told of signups, bounces and sends, signed and retried."""
