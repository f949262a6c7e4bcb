"""Checkpoints hold the unmasked ticket (resume needs it), so they are encrypted at rest under the
vault key: no email in the checkpoint files, and a run still resumes from them."""

from __future__ import annotations

import pytest

from agent.checkpoint_cipher import CheckpointSerializer, VaultCipher
from agent.tickets import Ticket
from agent.vault import Vault, VaultTampered

EMAIL = "jane@example.com"


def _checkpoint_bytes(runtime) -> bytes:
    path = runtime.settings.checkpoint_path
    return b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))  # the database and its WAL


def test_checkpoint_files_hold_no_plain_email_and_the_state_reads_back(runner, runtime):
    result = runner.submit(Ticket(text=f"I forgot my password and can't log in, my email is {EMAIL}", requester_email=EMAIL, ticket_id="1003"))
    assert result.status == "completed"
    assert EMAIL.encode() not in _checkpoint_bytes(runtime)
    state = runtime.graph.get_state({"configurable": {"thread_id": result.run_id}})
    assert state.values["ticket"]["requester_email"] == EMAIL  # the original, decrypted for resume


def test_a_checkpoint_sealed_under_another_key_does_not_open():
    sealed = VaultCipher(Vault(b"k" * 32)).encrypt(b'{"ticket": "x"}')
    assert VaultCipher(Vault(b"k" * 32)).decrypt(*sealed) == b'{"ticket": "x"}'
    with pytest.raises(VaultTampered):
        VaultCipher(Vault(b"o" * 32)).decrypt(*sealed)


def test_without_a_vault_checkpoints_are_plain_and_an_encrypted_one_needs_the_key():
    plain = CheckpointSerializer(lambda: None)
    typ, data = plain.dumps_typed({"a": 1})
    assert "+" not in typ and plain.loads_typed((typ, data)) == {"a": 1}
    sealed = CheckpointSerializer(lambda: Vault(b"k" * 32)).dumps_typed({"a": 1})
    assert "+" in sealed[0] and CheckpointSerializer(lambda: Vault(b"k" * 32)).loads_typed(sealed) == {"a": 1}
    with pytest.raises(ValueError, match="no vault key"):
        plain.loads_typed(sealed)
