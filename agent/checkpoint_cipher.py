"""Checkpoints encrypted under the vault key.

A checkpoint holds the run's state as the customer wrote it (resume needs the real email and
ticket id), so it is personal data at rest like the vault's originals and is sealed the same way:
AES-256-GCM under the vault key. Without a vault (masking or originals switched off) checkpoints
are stored as LangGraph writes them.
"""

from __future__ import annotations

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


def checkpoint_serializer(vault: Vault | None) -> SerializerProtocol:
    """Encrypting serializer when a vault key is configured, LangGraph's default otherwise."""
    return EncryptedSerializer(VaultCipher(vault)) if vault is not None else JsonPlusSerializer()
