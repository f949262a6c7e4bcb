"""Hostile files and arguments found by fuzzing the CLI: each gets one `error:` line and exit 2
(or a warning, where the command carries on), never a traceback, a hang or a lost store."""

from __future__ import annotations

import hashlib
import json
import os
import stat
from pathlib import Path

import pytest

from tests.conftest import make_settings
from tests.liveness import finishes
from tests.record_support import TICKETS, cli_env, invoke

BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\nproduct: *b\n"
DEEP_JSON = '{"text": "hi", "tags": ' + "[" * 20_000 + "]" * 20_000 + "}"
BIG_INT = '{"text": "hi", "tags": [' + "1" * 5000 + "]}"


def _one_error(result, *words: str | tuple[str, ...]) -> None:  # noqa: ANN001
    """Exit 2 with one `error:` line holding every word (a tuple: any one of its words)."""
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert all(any(w in lines[0] for w in ((word,) if isinstance(word, str) else word)) for word in words), lines[0]


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_export_refuses_to_write_over_the_stores_and_writes_atomically(runner, settings, tmp_path):
    runner.submit(TICKETS[1])
    env = cli_env(settings)
    stores = [settings.vault_key_path, settings.checkpoint_path]
    before = {path: _digest(path) for path in stores}
    for path in stores:
        _one_error(invoke(env, "audit", "export", "-o", str(path)), "where caseplan keeps its own data")
    assert {path: _digest(path) for path in stores} == before
    _one_error(invoke(env, "audit", "export", "-o", str(tmp_path)), "is a folder")
    _one_error(invoke(env, "audit", "export", "-o", str(tmp_path / "missing" / "x.jsonl")), "does not exist")
    target = tmp_path / "export.jsonl"
    target.write_text("earlier export\n")
    _one_error(invoke(env, "audit", "export", "run_nope", "-o", str(target)), "unknown run id")
    assert target.read_text() == "earlier export\n"  # a failed export leaves the earlier file alone
    assert invoke(env, "audit", "export", "-o", str(target)).exit_code == 0
    assert invoke(env, "audit", "verify", "--file", str(target)).exit_code == 0
    assert list(tmp_path.glob(".export.jsonl.*")) == []  # no temporary file left behind


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["audit", "list", "--limit", "99999999999999999999"], ["--limit"]),
        (["stats", "--limit", "99999999999999999999"], ["--limit"]),
        (["audit", "list", "--status", "bogus"], ["--status 'bogus' is not a run status"]),
        (["audit", "list", "--since", ""], ["--since is empty"]),
        (["worker", "--threads", "100000"], ["--threads"]),
        (["serve", "--port", "99999"], ["--port"]),
        (["serve", "--workers", "-5"], ["--workers"]),
    ],
)
def test_out_of_range_options(settings, args, words):
    result = invoke(cli_env(settings), *args)
    assert result.exit_code == 2 and all(word in result.output + result.stderr for word in words), result.output


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (DEEP_JSON, ["ticket is not valid JSON: nested too deeply"]),
        (BIG_INT, ["ticket is not valid JSON: a number has too many digits"]),
        ('{"text": "a\x01b"}', ["Invalid control character at line 1"]),
    ],
)
def test_ticket_files_that_break_parsers(settings, tmp_path, content, words):
    path = tmp_path / "ticket.json"
    path.write_text(content)
    _one_error(invoke(cli_env(settings), "run", "--file", str(path)), *words)


def test_a_ticket_file_is_not_read_past_its_size_limit(runtime, settings, tmp_path):
    big = tmp_path / "big.json"
    big.write_text('{"text": "' + "x" * 200_000 + '"}')
    _one_error(invoke(cli_env(settings), "run", "--file", str(big)), "larger than", "at most 20,000 characters")


# Every command that reads a file a user names, given a pipe nobody writes to (the open would
# block for ever) or a device that never ends (/dev/zero: memory): one error line, at once.
NOT_REGULAR = [
    (["run", "--file", "{path}"], "not a regular file"),
    (["audit", "verify", "--file", "{path}"], "not a regular file"),
    (["plans", "validate", "{path}"], "not a regular file"),
    (["policies", "validate", "{path}"], "not a regular file"),
    (["--config", "{path}", "plans", "list"], "not a regular file"),
    (["eval", "run", "{path}"], "not a regular file"),
    (["eval", "run", "{cases}", "--compare", "{path}"], "not a regular file"),
    (["eval", "harvest", "--since", "2020-01-01", "--out", "{path}"], "not a regular file"),
    (["audit", "export", "-o", "{path}"], "not a regular file"),
]


@pytest.mark.parametrize("kind", ["fifo", "device"])
@pytest.mark.parametrize(("args", "words"), NOT_REGULAR, ids=[" ".join(a[:2]) + (" " + a[2] if a[2].startswith("-") else "") for a, _ in NOT_REGULAR])
def test_pipes_and_devices_are_refused_not_read(runtime, settings, tmp_path, kind, args, words):
    path = tmp_path / "input.jsonl"
    if kind == "fifo":
        os.mkfifo(path)
    else:
        path.symlink_to("/dev/zero")
    cases = tmp_path / "cases.jsonl"
    cases.write_text('{"id": "c1", "ticket": {"text": "Any update on ticket 1002?"}, "expect": {"template": "ticket_status"}}\n')
    filled = [arg.format(path=path, cases=cases) for arg in args]
    try:
        result = finishes(lambda: invoke(cli_env(settings), *filled))
        _one_error(result, words)
        assert path.is_fifo() if kind == "fifo" else path.is_symlink()  # not replaced by a file either
    finally:
        if kind == "fifo":
            _release_reader(path)


def _release_reader(fifo: Path) -> None:
    """If a broken command is stuck opening the pipe, open its other end so it can finish."""
    try:
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
    except OSError:
        pass  # nobody is reading: nothing is stuck


def test_an_export_keeps_the_permissions_of_the_file_it_replaces(runner, settings, tmp_path):
    runner.submit(TICKETS[1])
    target = tmp_path / "shared.jsonl"
    target.write_text("earlier\n")
    target.chmod(0o644)
    assert invoke(cli_env(settings), "audit", "export", "-o", str(target)).exit_code == 0
    assert stat.S_IMODE(target.stat().st_mode) == 0o644 and "earlier" not in target.read_text()


def test_hostile_yaml_in_templates_policies_and_config(settings, tmp_path):
    env = cli_env(settings)
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(BOMB)
    deep = tmp_path / "deep.yaml"
    deep.write_text("name: x\nsteps: " + "[" * 20_000 + "]" * 20_000 + "\n")
    for path, words in ((bomb, ["aliases"]), (deep, ["nested too deeply"])):
        result = invoke(env, "plans", "validate", str(path))
        assert result.exit_code == 2 and str(path) in result.stderr and "Traceback" not in result.output, result.stderr
        assert invoke(env, "policies", "validate", str(path)).exit_code == 2
        _one_error(invoke(env, "--config", str(path), "plans", "list"), str(path), *words)
    latin1 = tmp_path / "latin1.yaml"
    latin1.write_bytes("caf\xe9: 1\n".encode("latin-1"))
    _one_error(invoke(env, "--config", str(latin1), "plans", "list"), "not UTF-8 text")
    empty = tmp_path / "empty"
    empty.mkdir()
    _one_error(invoke(env, "plans", "validate", str(empty)), "nothing was checked")


def test_values_that_validate_must_also_run(settings, tmp_path):
    """A window or version so large that the run itself would crash is refused by validate."""
    env = cli_env(settings)
    policy = tmp_path / "policy.yaml"
    policy.write_text("version: 1\nrate_limits:\n  - {id: r1, tool: password_reset, per: requester, limit: 1, window: 99999999999999999d}\n")
    result = invoke(env, "policies", "validate", str(policy))
    assert result.exit_code == 2 and "at most 366d" in result.stderr, result.stderr
    template = Path(__file__).parent.parent / "plans" / "templates" / "ticket_status.yaml"
    huge = tmp_path / "ticket_status.yaml"
    huge.write_text(template.read_text().replace("version: 1", "version: 99999999999999999999999", 1))
    result = invoke(env, "plans", "validate", str(huge))
    assert result.exit_code == 2 and "version" in result.stderr, result.stderr


def test_a_data_dir_that_is_a_file(settings, tmp_path):
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("x")
    _one_error(invoke(cli_env(settings, CASEPLAN_DATA_DIR=str(not_a_folder)), "audit", "list"), "is a file, not a folder")


def test_eval_files_that_break_parsers(settings, tmp_path):
    env = cli_env(settings)
    big_cell = tmp_path / "big.csv"
    big_cell.write_text("id,text,expected_template\nc1," + "x" * 200_000 + ",faq\n")
    _one_error(invoke(env, "eval", "run", str(big_cell)), "not a readable CSV file")
    repeated = tmp_path / "repeated.csv"
    repeated.write_text("id,text,text,expected_template\nc1,a,b,faq\n")
    _one_error(invoke(env, "eval", "run", str(repeated)), "appear more than once")
    report_file = tmp_path / "afile"
    report_file.write_text("x")
    _one_error(invoke(env, "eval", "run", str(repeated), "--out", str(report_file)), "is a file; give a folder")
    latin1 = tmp_path / "harvest.jsonl"
    latin1.write_bytes(b"\xe9\n")
    _one_error(invoke(env, "eval", "harvest", "--since", "2026-01-01", "--out", str(latin1)), "cannot read it as a JSONL file")


def test_eval_rows_with_unknown_reasons_or_oversized_tickets_are_invalid(tmp_path):
    from agent.evals.cases import load_case_file

    cases = tmp_path / "cases.jsonl"
    rows = [
        {"id": "reason", "ticket": {"text": "hi"}, "expect": {"template": "escalate", "escalation_reason": "not_a_reason"}},
        {"id": "long", "ticket": {"text": "x" * 20_001}, "expect": {"template": "escalate"}},
        {"id": "fine", "ticket": {"text": "hi"}, "expect": {"template": "escalate", "escalation_reason": "out_of_scope"}},
    ]
    cases.write_text("\n".join(json.dumps(row) for row in rows) + "\n" + BIG_INT + "\n")
    loaded = load_case_file(cases, ["escalate"], [], max_ticket_chars=20_000)
    assert [case.id for case in loaded.cases] == ["fine"]
    reasons = " | ".join(str(row) for row in loaded.invalid)
    assert "escalation_reason" in reasons and "the limit is 20000" in reasons and "too many digits" in reasons


def test_knowledge_files_with_bombs_deep_nesting_and_non_scalar_fields(tmp_path):
    from tools.knowledge.documents import load_documents

    (tmp_path / "bomb.md").write_text(f"---\n{BOMB}---\n# Title\n\nBody text.\n")
    (tmp_path / "list.md").write_text("---\n- a\n- b\n---\n# Listed\n\nBody text.\n")
    (tmp_path / "docs.jsonl").write_text(
        "\n".join(
            [
                json.dumps({"id": {"a": 1}, "content": "object id"}),
                json.dumps({"id": "fine", "title": ["not", "a", "title"], "product": {"x": 1}, "content": "kept"}),
                DEEP_JSON.replace('"tags"', '"x"'),
                BIG_INT,
            ]
        )
        + "\n"
    )
    documents, problems = load_documents([tmp_path], "test")
    assert sorted(d.id for d in documents) == ["fine", "list"]
    fine = next(d for d in documents if d.id == "fine")
    assert (fine.title, fine.product) == ("fine", None)
    messages = " | ".join(f"{p.origin}: {p.message}" for p in problems)
    for expected in ("aliases", "front matter is not a mapping", "field 'id' must be a single value", "field 'title'", "field 'product'", "nested too deeply", "too many digits"):
        assert expected in messages, messages


def test_since_at_the_ends_of_the_calendar_is_one_error_line(runtime, settings):
    for args in (["audit", "list", "--since", "0001-01-01T00:00:00+01:00"], ["audit", "verify", "--all", "--since", "9999-12-31T23:59:59-01:00"]):
        _one_error(invoke(cli_env(settings), *args), "outside the dates a record can hold")


def test_a_record_file_that_is_not_a_database_is_one_error_line(tmp_path):
    settings = make_settings(tmp_path / "data")  # a SQLite file, whichever database the suite runs on
    database = settings.data_path / "caseplan.db"
    database.parent.mkdir(parents=True, exist_ok=True)
    database.write_bytes(os.urandom(8192))
    for args in (["audit", "list"], ["stats"], ["db", "current"]):
        _one_error(invoke(cli_env(settings), *args), "the database cannot be used (file is not a database)")


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("postgres://caseplan@db.internal/caseplan", ("database URL postgres://", "Can't load plugin")),
        ("postgresql+psycopg2://u:hunter2secret@db.internal/d", ("postgresql+psycopg2://u:***@db.internal/d", "psycopg2")),
        ("notaurl", ("database URL 'notaurl'", "Could not parse")),
        ("sqlite:///{tmp}/a-file/x.db", ("/a-file/x.db cannot be used", ("File exists", "is a file, not a folder"))),  # writers, readers
    ],
    ids=["postgres scheme", "driver not installed", "not a URL", "folder is a file"],
)
def test_a_database_url_that_names_no_usable_database_is_one_line_without_its_password(tmp_path, url, words):
    (tmp_path / "a-file").write_text("not a folder")
    env = {"CASEPLAN_DATA_DIR": str(tmp_path / "data"), "CASEPLAN__DATABASE__URL": url.format(tmp=tmp_path)}
    for command in (("audit", "list"), ("tools", "list")):
        result = invoke(env, *command)
        _one_error(result, *words)
        assert "hunter2secret" not in result.output
