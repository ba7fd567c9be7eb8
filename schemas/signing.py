"""Signed control messages: the canonical bytes, Ed25519 signing and verification, key files.

A signed message is a JSON object with ``issuer`` (the signer's id) and ``signature``
(base64 Ed25519 over :func:`canonical_bytes`: the JSON of the object without
``signature``, keys sorted, no spaces, UTF-8). The verifier canonicalises the object it
received, so a signer in any language only has to produce the same bytes.

Keys: a signer holds a private key (PEM PKCS#8 file, or base64 of the 32 raw bytes in an
environment variable); a verifier holds one public key per signer id, the file
``<trusted_dir>/<signer>.pub`` (PEM). :func:`generate_key` writes both.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
import re
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from schemas.exceptions import MillstreamError

__all__ = [
    "SIGNER_PATTERN",
    "Signer",
    "SigningError",
    "TrustedKeys",
    "canonical_bytes",
    "generate_key",
    "verify_doc",
]

logger = logging.getLogger(__name__)

SIGNER_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")


class SigningError(MillstreamError):
    """A key that cannot be read or a signer id that is not valid."""


def canonical_bytes(doc: dict[str, Any]) -> bytes:
    """The bytes a signature covers: ``doc`` without ``signature``, keys sorted, compact."""
    body = {k: v for k, v in doc.items() if k != "signature"}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode()


def _check_id(signer_id: str) -> str:
    if not SIGNER_PATTERN.match(signer_id):
        raise SigningError(f"signer id {signer_id!r} is not valid; use letters, digits and "
                           "._@- (at most 64), e.g. 'streams' or 'alice'")
    return signer_id


class Signer:
    """An identity and its private key; :meth:`sign` adds ``issuer`` and ``signature``."""

    def __init__(self, signer_id: str, key: Ed25519PrivateKey) -> None:
        self.signer_id = _check_id(signer_id)
        self._key = key

    def __repr__(self) -> str:  # never the key
        return f"Signer({self.signer_id!r})"

    def sign(self, doc: dict[str, Any]) -> dict[str, Any]:
        signed = {**doc, "issuer": self.signer_id}
        signed.pop("signature", None)
        signature = self._key.sign(canonical_bytes(signed))
        return {**signed, "signature": base64.b64encode(signature).decode()}

    @classmethod
    def from_file(cls, signer_id: str, path: Path) -> Signer:
        try:
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        except (OSError, ValueError, TypeError) as exc:
            raise SigningError(f"cannot read the signing key {path} of {signer_id!r}: "
                               f"{type(exc).__name__}; give a PEM Ed25519 private key "
                               "(`millstream command keygen`)") from exc
        if not isinstance(key, Ed25519PrivateKey):
            raise SigningError(f"the signing key {path} is not an Ed25519 key")
        return cls(signer_id, key)

    @classmethod
    def from_base64(cls, signer_id: str, text: str) -> Signer:
        try:
            raw = base64.b64decode(text.strip(), validate=True)
            return cls(signer_id, Ed25519PrivateKey.from_private_bytes(raw))
        except (binascii.Error, ValueError) as exc:  # the message never echoes the secret
            raise SigningError(f"the signing key of {signer_id!r} in the environment is not "
                               "base64 of 32 raw Ed25519 bytes") from exc

    @classmethod
    def local(cls, signer_id: str, keys_dir: Path) -> Signer:
        """The local stack's key ``<keys_dir>/<signer>.key``, created (with its public key
        in ``<keys_dir>/trusted``) when missing."""
        path = keys_dir / f"{_check_id(signer_id)}.key"
        if not path.exists():
            generate_key(signer_id, keys_dir, keys_dir / "trusted")
        return cls.from_file(signer_id, path)


def generate_key(signer_id: str, private_dir: Path, trusted_dir: Path) -> tuple[Path, Path]:
    """Write a new key pair: ``<private_dir>/<id>.key`` (mode 0600) and
    ``<trusted_dir>/<id>.pub``; refuses to overwrite an existing private key."""
    _check_id(signer_id)
    private_dir.mkdir(parents=True, exist_ok=True)
    trusted_dir.mkdir(parents=True, exist_ok=True)
    key = Ed25519PrivateKey.generate()
    priv, pub = private_dir / f"{signer_id}.key", trusted_dir / f"{signer_id}.pub"
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    try:
        fd = os.open(priv, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError as exc:
        raise SigningError(f"{priv} exists; delete it first to replace the key") from exc
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)
    tmp = pub.with_suffix(".pub.tmp")
    tmp.write_bytes(key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    tmp.replace(pub)
    logger.info("generated signing key %s (public key %s)", priv, pub)
    return priv, pub


class TrustedKeys:
    """Public keys by signer id, read from ``<dir>/<signer>.pub`` when first needed (so a
    signer added while the executor runs is found)."""

    def __init__(self, directory: Path | None) -> None:
        self.directory = directory
        self._keys: dict[str, Ed25519PublicKey] = {}

    def get(self, signer_id: str) -> Ed25519PublicKey | None:
        if signer_id in self._keys:
            return self._keys[signer_id]
        if self.directory is None or not SIGNER_PATTERN.match(signer_id):
            return None
        path = self.directory / f"{signer_id}.pub"
        try:
            key = serialization.load_pem_public_key(path.read_bytes())
        except (OSError, ValueError) as exc:
            logger.debug("no trusted key for %r at %s: %r", signer_id, path, exc)
            return None
        if not isinstance(key, Ed25519PublicKey):
            logger.warning("trusted key %s is not an Ed25519 key; ignored", path)
            return None
        self._keys[signer_id] = key
        return key


def verify_doc(doc: dict[str, Any], trusted: TrustedKeys) -> str | None:
    """None if ``doc`` carries a valid signature of a trusted ``issuer``, else why not."""
    issuer, signature = doc.get("issuer"), doc.get("signature")
    if not isinstance(issuer, str) or not issuer:
        return "unsigned: the command names no issuer; every command must be signed"
    if not isinstance(signature, str) or not signature:
        return f"unsigned: the command of issuer {issuer!r} carries no signature"
    key = trusted.get(issuer)
    if key is None:
        return (f"unknown signer: no trusted public key for issuer {issuer!r} in "
                f"{trusted.directory}; add {issuer}.pub there if it may issue commands")
    try:
        key.verify(base64.b64decode(signature, validate=True), canonical_bytes(doc))
    except (binascii.Error, ValueError, InvalidSignature):
        return (f"bad signature: the signature does not match the command's content for "
                f"issuer {issuer!r}; the command was altered or forged")
    return None
