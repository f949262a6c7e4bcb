"""Secret keys kept outside the database: from an environment variable, else from a local file
made on first use (mode 0600), so the embedded default needs no set-up and a deployment of
several processes sets the variable once for all of them."""

from __future__ import annotations

import base64
import binascii
import os
import threading
from pathlib import Path

from agent.integrity import RecordError
from agent.settings import Settings
from policies.pii import use_fingerprint_key


def new_key_text() -> str:
    """32 random bytes in urlsafe base64: the form every caseplan key variable takes."""
    return base64.urlsafe_b64encode(os.urandom(32)).decode()


def read_key_text(key_env: str, key_file: Path, *, create: bool) -> tuple[str, str] | None:
    """(key text, where it came from): `key_env` when set, else `key_file`, made when `create`
    and missing; None when neither is there."""
    text = os.environ.get(key_env, "").strip()
    if text:
        return text, key_env
    if not key_file.exists():
        if not create:
            return None
        key_file.parent.mkdir(parents=True, exist_ok=True)
        draft = key_file.with_name(f".{key_file.name}.{os.getpid()}.{threading.get_ident()}")  # per thread: writers race
        handle = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(handle, "w") as out:
            out.write(new_key_text() + "\n")
        try:
            os.link(draft, key_file)  # atomic: a complete key appears, or another process's stays
        except FileExistsError:
            pass
        finally:
            draft.unlink()
    return key_file.read_text(), str(key_file)


def decode_key(text: str, source: str, purpose: str) -> bytes:
    """The 32 bytes of a key, or a RecordError naming where the unusable key came from."""
    try:
        key = base64.urlsafe_b64decode(text.strip().encode())
    except (binascii.Error, ValueError):
        key = b""
    if len(key) != 32:
        raise RecordError(f"{source}: the {purpose} must be 32 bytes in urlsafe base64 (make one with `caseplan audit keygen`)")
    return key


def use_configured_fingerprint_key(settings: Settings, *, create: bool) -> bool:
    """Give this process the deployment's PII fingerprint key (`pii.fingerprint_key_env`, else
    the key file, made when `create`). False when there is none yet: a random key stands in."""
    found = read_key_text(settings.pii.fingerprint_key_env, settings.fingerprint_key_path, create=create)
    if found is None:
        return False
    use_fingerprint_key(decode_key(*found, purpose="PII fingerprint key"))
    return True
