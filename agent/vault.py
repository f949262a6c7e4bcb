"""PII in the run record: masked where it is stored, the originals sealed in a vault.

Auditors read masked payloads (`[email:1a2b3c4d]`, from `policies.pii`). Exact replay and
crash-resume need what the customer really wrote (a plan compiled from a masked ticket is a
different plan with a different hash), so whatever masking changed is also encrypted with
AES-256-GCM under the vault key, bound to where it belongs: its reference and the digest of
its masked form. A sealed value moved to another event, or a masked form edited, no longer
opens. The key lives outside the database: without it the record still verifies and reads
masked; with it, replay sees what really happened. Deleting a run's vault rows erases its
PII without breaking its hash chain, which covers only the masked form.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from agent.integrity import KeyUnavailable, RecordError, key_fingerprint
from agent.keyfile import decode_key, read_key_text
from plans.models import canonical_json
from policies.pii import mask_text

DROPPED = "dropped"
"""key_id of a vault row that only says: this was masked and the original was not kept."""

# Hashes and `run_…`, `ver_…`, `esc_…` ids are not PII, but their digit runs can pass the card
# checksum (about 1 in 200 sha256 digests would); masking them would garble the record.
_MACHINE_ID = re.compile(r"(?:[a-z]+_)?[0-9a-f]{16,}")


class VaultTampered(RecordError):
    """A sealed original that does not open under the right key: moved, altered or re-bound."""


def mask_record(value: Any, kinds: Iterable[str]) -> Any:
    """`mask_text` on every string of JSON-like data except machine identifiers."""
    kinds = tuple(kinds)
    if isinstance(value, str):
        return value if _MACHINE_ID.fullmatch(value) else mask_text(value, kinds)
    if isinstance(value, dict):
        return {key: mask_record(item, kinds) for key, item in value.items()}
    if isinstance(value, list):
        return [mask_record(item, kinds) for item in value]
    return value


class Vault:
    """Seals and opens originals under one AES-256-GCM key."""

    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise RecordError("the vault key must be 32 bytes")
        self._aead = AESGCM(key)
        self.key_id = key_fingerprint(key)

    @staticmethod
    def _bound_to(ref: str, masked: Any) -> bytes:
        return f"{ref}\n{hashlib.sha256(canonical_json(masked).encode()).hexdigest()}".encode()

    def seal(self, ref: str, original: Any, masked: Any) -> str:
        nonce = os.urandom(12)
        sealed = self._aead.encrypt(nonce, canonical_json(original).encode(), self._bound_to(ref, masked))
        return base64.urlsafe_b64encode(nonce + sealed).decode()

    def encrypt_bytes(self, plain: bytes) -> bytes:
        nonce = os.urandom(12)
        return nonce + self._aead.encrypt(nonce, plain, self.key_id.encode())

    def decrypt_bytes(self, sealed: bytes) -> bytes:
        try:
            return self._aead.decrypt(sealed[:12], sealed[12:], self.key_id.encode())
        except InvalidTag:
            raise VaultTampered(f"encrypted data does not open with vault key id {self.key_id} (other key, or altered)") from None

    def open(self, ref: str, key_id: str, sealed: str, masked: Any) -> Any:
        """The original of `masked` at `ref`; RecordError when it cannot be had, saying why."""
        if key_id != self.key_id:
            raise KeyUnavailable(f"{ref}: sealed with vault key id {key_id}, but the configured vault key has id {self.key_id}")
        try:
            raw = base64.urlsafe_b64decode(sealed.encode())
            return json.loads(self._aead.decrypt(raw[:12], raw[12:], self._bound_to(ref, masked)))
        except (InvalidTag, binascii.Error, ValueError):
            raise VaultTampered(f"{ref}: the sealed original does not open here (moved, altered, or its masked form was edited)") from None


def load_vault(key_env: str, key_file: Path, *, create: bool) -> Vault | None:
    """The vault key from `key_env`, else from `key_file` (made, mode 0600, when `create`)."""
    found = read_key_text(key_env, key_file, create=create)
    return Vault(decode_key(*found, purpose="vault key")) if found else None


def reveal(vault: Vault | None, key_env: str, ref: str, key_id: str, sealed: str, masked: Any) -> Any:
    """The original behind a vault row, or a RecordError saying why it cannot be had."""
    if key_id == DROPPED:
        raise RecordError(f"{ref}: PII was masked and the original was not kept (record.keep_originals was false)")
    if vault is None:
        raise KeyUnavailable(f"{ref}: holds masked PII whose original is sealed in the vault; set {key_env} (the vault key) to open it")
    return vault.open(ref, key_id, sealed, masked)
