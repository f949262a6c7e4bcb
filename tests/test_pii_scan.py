"""PII masking per destination (logs here; the record in test_record_pii) and `caseplan scan`,
which finds what escaped masking in log files and in the stored record."""

from __future__ import annotations

import io
import json
import logging
import sys

import structlog

from agent.logging import configure_logging
from agent.runner import Runner
from agent.settings import LoggingSettings
from agent.tickets import Ticket
from policies.scan import scan_files, scan_record, scan_text
from tests.record_support import cli_env, execute, invoke

CARD = "4111 1111 1111 1111"


def capture_logs(monkeypatch, kinds) -> io.StringIO:
    stream = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)
    configure_logging(LoggingSettings(format="json", level="INFO"), mask_kinds=kinds)
    return stream


def test_logs_are_masked_per_destination_setting(monkeypatch):
    stream = capture_logs(monkeypatch, ["email", "card", "phone"])
    structlog.get_logger("t").warning("contact jane@example.com", card=CARD, nested={"to": ["omar@example.com"]})
    logging.getLogger("thirdparty").warning("calling +44 20 7946 0958 for %s", "li.wei@example.com")
    written = stream.getvalue()
    assert "[email:" in written and "[card:" in written
    for value in ("jane@example.com", CARD, "omar@example.com", "li.wei@example.com", "+44 20 7946 0958"):
        assert value not in written
    unmasked = capture_logs(monkeypatch, [])
    structlog.get_logger("t").warning("contact jane@example.com")
    assert "jane@example.com" in unmasked.getvalue()  # an empty list sends that destination the values
    configure_logging(LoggingSettings())



def test_an_access_log_path_and_a_traceback_are_masked_too(monkeypatch):
    """uvicorn writes "@" in a path as "%40", which hid the address from the patterns; a
    third-party traceback is printed from the exception, not the message."""
    stream = capture_logs(monkeypatch, ["email", "phone"])
    logging.getLogger("uvicorn.access").info('127.0.0.1 - "GET /v1/runs/jane.doe%40example.com HTTP/1.1" 404')
    try:
        raise ValueError("no account for omar@example.com")
    except ValueError:
        logging.getLogger("thirdparty").exception("lookup failed")
    logging.getLogger("thirdparty").warning("discount 100%s off", "%")  # no PII behind the escape: unchanged
    written = stream.getvalue()
    assert "jane.doe%40example.com" not in written and "omar@example.com" not in written and written.count("[email:") >= 2
    assert "discount 100% off" in written and all(json.loads(line) for line in written.splitlines())  # JSON lines, as configured
    assert [f.kind for f in scan_text('"GET /v1/runs/jane.doe%40example.com HTTP/1.1"', "log")] == ["email"]
    configure_logging(LoggingSettings())

def test_scan_text_ignores_placeholders_partial_forms_and_machine_ids():
    assert scan_text("[email:1a2b3c4d] j***@example.com run_0123456789abcdef0123", "x") == []
    assert {f.kind for f in scan_text(f"mail jane@example.com card {CARD} call (415) 555-2671", "x")} == {"email", "card", "phone"}
    assert all("jane@example.com" not in f.excerpt for f in scan_text("mail jane@example.com", "x"))


def test_scan_command_finds_planted_pii_in_logs_and_record(tmp_path, runtime, settings):
    result = Runner(runtime).submit(Ticket(text=f"My card {CARD} was charged twice, write to jane@example.com", requester_email="jane@example.com"))
    env = cli_env(settings)
    clean_log = tmp_path / "clean.log"
    clean_log.write_text('{"event": "run finished", "to": "[email:8c7f2f2e]"}\n')
    clean = invoke(env, "scan", str(clean_log))
    assert clean.exit_code == 0, clean.stdout
    assert "no unmasked PII found" in clean.stdout
    assert scan_record(runtime.engine) == []

    leaky_log = tmp_path / "leaky.log"
    leaky_log.write_text("ok line\nsent to omar@example.com\n")
    execute(runtime.engine, "UPDATE run SET reply = :reply WHERE id = :id", reply=f"card {CARD}", id=result.run_id)
    found = invoke(env, "scan", str(leaky_log))
    assert found.exit_code == 1
    assert f"{leaky_log}:2: unmasked email" in found.stdout
    assert f"run:{result.run_id}:reply: unmasked card" in found.stdout
    assert "omar@example.com" not in found.stdout and CARD not in found.stdout
    assert [f.kind for f in scan_files([leaky_log])] == ["email"]
    assert invoke(env, "scan", "--kind", "ssn").exit_code == 2
    assert invoke(env, "scan", str(tmp_path / "missing.log")).exit_code == 2
