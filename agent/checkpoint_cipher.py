"""Checkpoints encrypted under the vault key.

A checkpoint holds the run's state as the customer wrote it (resume needs the real email and
ticket id), so it is personal data at rest like the vault's originals and is sealed the same way:
AES-256-GCM under the vault key. Without a vault (masking or originals switched off) checkpoints
are stored as LangGraph writes them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from langgraph.checkpoint.serde.base import CipherProtocol, SerializerProtocol
from langgraph.checkpoint.serde.encrypted import EncryptedSerializer
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

from agent.vault import Vault

CIPHER_NAME = "vault-aes256gcm"


class VaultCipher(CipherProtocol):
    """LangGraph's cipher interface over the vault's AES-256-GCM key."""

    def __init__(self, vault: Vault) -> None:
        self.vault = vault

    def encrypt(self, plaintext: bytes) -> tuple[str, bytes]:
        return CIPHER_NAME, self.vault.encrypt_bytes(plaintext)

    def decrypt(self, ciphername: str, ciphertext: bytes) -> bytes:
        if ciphername != CIPHER_NAME:
            raise ValueError(f"checkpoint sealed with unknown cipher {ciphername!r}")
        return self.vault.decrypt_bytes(ciphertext)


class CheckpointSerializer(SerializerProtocol):
    """Encrypts under the vault key when there is one, read at the first checkpoint rather than
    at start-up (so a reader that never checkpoints never creates a key)."""

    def __init__(self, vault_source: Callable[[], Vault | None]) -> None:
        self.vault_source = vault_source
        self.plain = JsonPlusSerializer()

    def _encrypted(self) -> SerializerProtocol | None:
        vault = self.vault_source()
        return EncryptedSerializer(VaultCipher(vault), self.plain) if vault is not None else None

    def dumps_typed(self, obj: Any) -> tuple[str, bytes]:
        return (self._encrypted() or self.plain).dumps_typed(obj)

    def loads_typed(self, data: tuple[str, bytes]) -> Any:
        if "+" not in data[0]:
            return self.plain.loads_typed(data)
        encrypted = self._encrypted()
        if encrypted is None:
            raise ValueError("this checkpoint is encrypted and no vault key is configured")
        return encrypted.loads_typed(data)
