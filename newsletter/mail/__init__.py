"""Mail as bytes on the wire: MIME, per-reader MIME plans, DKIM, and the SMTP/capture transports.

It knows nothing of readers or issues; the packages above hand it text and addresses.
"""
