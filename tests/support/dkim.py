"""A DKIM signing key for tests: a fresh RSA-2048 key in PEM, as ops would configure it."""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa


def write_dkim_key(path: Path) -> Path:
    """Write a new RSA-2048 private key (PKCS#8 PEM) to ``path``; returns ``path``."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return path
