"""The signer of this process, from the settings (see ``command_*`` in Settings)."""

from __future__ import annotations

import logging

from millstream.settings import Settings
from schemas.signing import Signer

__all__ = ["load_signer"]

logger = logging.getLogger(__name__)


def load_signer(settings: Settings, default_id: str) -> Signer:
    """The configured key (environment, then file), else the local stack's own key
    ``<data_dir>/keys/<signer>.key`` (created on first use, its public key trusted in
    ``<data_dir>/keys/trusted``)."""
    signer_id = settings.command_signer or default_id
    if settings.command_signing_key is not None:
        return Signer.from_base64(signer_id, settings.command_signing_key.get_secret_value())
    if settings.command_signing_key_file is not None:
        return Signer.from_file(signer_id, settings.command_signing_key_file)
    return Signer.local(signer_id, settings.keys_dir)
