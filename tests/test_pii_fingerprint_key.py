"""PII placeholders are keyed: nobody without the deployment's fingerprint key can turn
`[national_id:…]` back into the SSN by hashing all 10^9 candidates, and every process with the
key masks one value the same way."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import stat

import pytest

from agent.evals.runner import eval_settings
from agent.integrity import RecordError
from agent.keyfile import use_configured_fingerprint_key
from agent.runner import Runner
from agent.tickets import Ticket
from policies.pii import mask_text, placeholder, use_fingerprint_key
from tests.record_support import cli_env, invoke

SSN = "078-05-1120"


def keyed(key: bytes, value: str) -> str:
    return hmac.new(key, value.encode(), hashlib.sha256).hexdigest()[:8]


@pytest.fixture(autouse=True)
def restore_key():
    yield
    use_fingerprint_key(os.urandom(32))


def test_placeholders_cannot_be_reversed_by_hashing_candidates():
    use_fingerprint_key(b"k" * 32)
    masked = mask_text(f"my SSN is {SSN}")
    assert masked == f"my SSN is [national_id:{keyed(b'k' * 32, SSN)}]"
    assert hashlib.sha256(SSN.encode()).hexdigest()[:8] not in masked  # the old, unkeyed fingerprint
    assert placeholder("national_id", SSN) == placeholder("national_id", f" {SSN} ")  # stable under one key
    use_fingerprint_key(b"m" * 32)
    assert mask_text(f"my SSN is {SSN}") != masked
    with pytest.raises(ValueError, match="16 bytes"):
        use_fingerprint_key(b"short")


def test_the_runtime_makes_one_private_key_file_that_every_later_process_uses(build, settings):
    runtime = build()
    path = runtime.settings.fingerprint_key_path
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    key = base64.urlsafe_b64decode(path.read_text().strip())
    run_id = Runner(runtime).submit(Ticket(text=f"Reset my password, my SSN is {SSN}", requester_email="jane@example.com")).run_id
    assert f"[national_id:{keyed(key, SSN)}]" in str(runtime.store.get_run(run_id).model_dump())
    use_fingerprint_key(os.urandom(32))  # another process, before it reads the file
    assert use_configured_fingerprint_key(runtime.settings, create=False)
    assert placeholder("national_id", SSN) == f"[national_id:{keyed(key, SSN)}]"


def test_an_eval_s_throwaway_folder_masks_with_the_deployment_s_key(settings, tmp_path):
    assert eval_settings(settings, tmp_path / "eval-work").fingerprint_key_path == settings.fingerprint_key_path


def test_the_key_variable_wins_and_a_bad_one_is_refused_by_name(build, monkeypatch):
    key = os.urandom(32)
    monkeypatch.setenv("CASEPLAN_PII_FINGERPRINT_KEY", base64.urlsafe_b64encode(key).decode())
    runtime = build()
    assert not runtime.settings.fingerprint_key_path.exists()
    assert placeholder("email", "jane@example.com") == f"[email:{keyed(key, 'jane@example.com')}]"
    monkeypatch.setenv("CASEPLAN_PII_FINGERPRINT_KEY", "not-a-key")
    with pytest.raises(RecordError, match="CASEPLAN_PII_FINGERPRINT_KEY: the PII fingerprint key must be 32 bytes"):
        use_configured_fingerprint_key(runtime.settings, create=True)


def test_cli_masks_the_record_and_its_log_lines_with_the_configured_key(settings):
    key = os.urandom(32)
    env = cli_env(settings, CASEPLAN_PII_FINGERPRINT_KEY=base64.urlsafe_b64encode(key).decode(), CASEPLAN__LOGGING__LEVEL="DEBUG")
    result = invoke(env, "run", "--json", "Please close ticket 1001, call me on +44 20 7946 0958", "--requester", "omar@example.com")
    assert result.exit_code == 0, result.output
    shown = invoke(env, "audit", "show", "--json", result.stdout.split('"run_id": "')[1].split('"')[0])
    assert f"[phone:{keyed(key, '+44 20 7946 0958')}]" in shown.stdout
    bad = invoke({**env, "CASEPLAN_PII_FINGERPRINT_KEY": "zz"}, "plans", "list")
    assert bad.exit_code == 2 and "CASEPLAN_PII_FINGERPRINT_KEY: the PII fingerprint key must be 32 bytes" in bad.stderr
