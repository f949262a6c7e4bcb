"""Property-based fuzzing of the OpenAPI document (schemathesis, bounded) against the real app
on loopback: no 5xx, and every response matches the spec (status, content type, headers, body)."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, Phase, given, settings

schemathesis = pytest.importorskip("schemathesis", reason="schemathesis is not installed (pip install -e '.[dev]')")
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.specs.openapi.checks import (  # noqa: E402
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from agent.runtime import Runtime  # noqa: E402
from tests.conftest import make_settings  # noqa: E402
from tests.service_support import serve  # noqa: E402
from tools.sandbox.seed import seed_demo  # noqa: E402

pytestmark = pytest.mark.slow

EXAMPLES_PER_OPERATION = 15
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_headers_conformance, response_schema_conformance]


def fuzz(operation, base_url: str, headers: dict[str, str]) -> int:  # noqa: ANN001
    """Run one operation's generated cases through every check; returns how many ran."""
    ran = 0

    @given(case=operation.as_strategy())
    @settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, database=None, phases=[Phase.generate], suppress_health_check=list(HealthCheck))
    def check(case) -> None:  # noqa: ANN001
        nonlocal ran
        case.call_and_validate(base_url=base_url, headers=headers, checks=CHECKS, timeout=30)
        ran += 1

    check()
    return ran


def test_fuzzed_requests_get_no_5xx_and_conform_to_the_spec(tmp_path, database_env, embedder, local_model):
    # No workers, and ?wait= capped at a second: the fuzzer probes the API, not the graph.
    settings_ = make_settings(tmp_path / "data", **database_env, CASEPLAN__SERVICE__MAX_WAIT_S="1")
    runtime = Runtime.build(settings_, embedder=embedder, local_model=local_model)
    seed_demo(runtime.sandbox)
    with serve(runtime, workers=0) as service:
        schema = schemathesis.openapi.from_url(f"{service.url}/openapi.json")
        operations = [result.ok() for result in schema.get_all_operations()]
        assert len(operations) >= 15
        fuzzed = 0
        for role in ("admin", "platform"):
            for operation in operations:
                fuzzed += fuzz(operation, service.url, {"Authorization": f"Bearer {service.keys[role]}"})
        assert fuzzed >= len(operations) * 2
