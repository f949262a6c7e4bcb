"""The OpenSearch backend against a cluster that misbehaves: a hostile fake on loopback answers
searches with overload, error pages, bodies that are not search responses, a body that drips
or never ends, and refuses the `hybrid` query. Each is a typed tool error (transient ones
retried by the executor, with the cluster's Retry-After) or a fallback, never a crash; the CLI
says one line when the cluster cannot be reached."""

from __future__ import annotations

import re
import socket
import time

import pytest
from typer.testing import CliRunner

from agent.cli import app
from agent.settings import KnowledgeSettings
from tests.knowledge_support import HashEmbedder
from tests.servers.base import FakeApi, LoopbackServer, Reply, Seen, drip, flood
from tools.base import ToolContext, ToolError
from tools.contracts.knowledge import KnowledgeSearchInput
from tools.knowledge.documents import Document
from tools.knowledge.errors import ClusterError
from tools.knowledge.opensearch import OpenSearchIndex
from tools.knowledge.ranking import RankingConfig
from tools.knowledge.tool import KnowledgeSearch

HIT = {"_id": "ship:0", "_score": 1.5, "_source": {"document_id": "ship", "title": "Shipping", "section": "Standard", "passage": "Three to seven days.", "start": 0, "end": 20}}
SEARCH = {"hits": {"hits": [HIT]}}


class FakeCluster(FakeApi):
    """Answers searches with `reply` (a hybrid query with `hybrid_reply` when set)."""

    def __init__(self, reply: Reply, hybrid_reply: Reply | None = None) -> None:
        super().__init__()
        self.reply, self.hybrid_reply = reply, hybrid_reply

    def route(self, seen: Seen) -> Reply:
        if seen.path.endswith("/_search") and self.hybrid_reply and "hybrid" in str(seen.body):
            return self.hybrid_reply
        if seen.path.endswith("/_search"):
            return self.reply
        return Reply(404, {"error": {"type": "resource_not_found_exception", "reason": f"no {seen.path}"}})


_flood = flood(b'{"hits": {"hits": [{"_source": {"passage": "')
_drip = drip(b'{"hits": ', piece=b" ")


def backend_for(url: str, **opensearch: object) -> OpenSearchIndex:
    knowledge = KnowledgeSettings.model_validate({"backend": "opensearch", "opensearch": {"url": url, "search_timeout_s": 1, **opensearch}})
    return OpenSearchIndex.from_settings(knowledge, HashEmbedder(), RankingConfig())


def search(backend: OpenSearchIndex, mode: str = "bm25"):  # noqa: ANN201
    if mode != "bm25":
        return backend.search("how long does shipping take", {}, 3, mode=mode)
    return KnowledgeSearch(backend).invoke(KnowledgeSearchInput(query="how long does shipping take", k=3), ToolContext("r", "s", "k"))


FAULTS = {
    "429 with Retry-After": (Reply(429, {"error": {"type": "too_many_requests", "reason": "slow down"}}, {"Retry-After": "2"}), "transient", "429: slow down"),
    "503": (Reply(503, {"error": {"type": "unavailable", "reason": "shards are starting"}}), "transient", "503: shards are starting"),
    "an HTML 502 from a proxy": (Reply(502, "<html><body>Bad gateway</body></html>", {"Content-Type": "text/html"}), "transient", "502"),
    "a 200 that is not JSON": (Reply(200, "<html>maintenance</html>", {"Content-Type": "application/json"}), "permanent", "not JSON"),
    "an empty 200": (Reply(200, "", {"Content-Type": "application/json"}), "permanent", "not a search response"),
    "no hits": (Reply(200, {"took": 1}), "permanent", "not a search response (hits: Field required)"),
    "a hit without _source": (Reply(200, {"hits": {"hits": [{"_id": "x", "_score": 1.0}]}}), "permanent", "hits.hits.0._source: Field required"),
    "a score that is a word": (Reply(200, {"hits": {"hits": [{**HIT, "_score": "high"}]}}), "permanent", "hits.hits.0._score"),
    "a body that drips": (Reply(200, stream=_drip), "transient", "cannot get an answer (timed out: no complete response within 1s)"),
    "a body that never ends": (Reply(200, stream=_flood), "permanent", "larger than 8,388,608 bytes"),
}


@pytest.mark.parametrize("fault", FAULTS, ids=list(FAULTS))
def test_a_misbehaving_cluster_is_a_typed_tool_error(fault):
    reply, kind, words = FAULTS[fault]
    with LoopbackServer(FakeCluster(reply)) as cluster:
        started = time.monotonic()
        with pytest.raises(ToolError) as caught:
            search(backend_for(cluster.url))
    assert time.monotonic() - started < 5  # within the search timeout, not the server's pace
    error = caught.value
    assert (error.kind, error.status_code) == (kind, 502), error.message
    assert words in error.message and error.message.startswith(f"OpenSearch at 127.0.0.1:{cluster.url.rsplit(':', 1)[1]}: ")
    assert error.retry_after == (2.0 if "Retry-After" in fault else None)


def test_a_cluster_that_refuses_the_hybrid_query_is_searched_with_client_side_fusion():
    refused = Reply(400, {"error": {"type": "parsing_exception", "reason": "unknown query [hybrid]"}, "status": 400})
    api = FakeCluster(Reply(200, SEARCH), hybrid_reply=refused)
    with LoopbackServer(api) as cluster:
        backend = backend_for(cluster.url)
        [passage] = search(backend, mode="hybrid")
        assert passage.document_id == "ship" and set(passage.ranks) == {"bm25", "dense"}
        assert backend.native_hybrid is False
        search(backend, mode="hybrid")
    hybrid_queries = [seen for seen in api.requests if "hybrid" in str(seen.body)]
    assert len(hybrid_queries) == 1  # asked once; then fused here


def test_a_hybrid_query_with_a_bad_filter_is_not_mistaken_for_a_missing_feature():
    overloaded = Reply(503, {"error": {"type": "unavailable", "reason": "busy"}})
    with LoopbackServer(FakeCluster(Reply(200, SEARCH), hybrid_reply=overloaded)) as cluster:
        backend = backend_for(cluster.url)
        with pytest.raises(ClusterError, match="503: busy"):
            search(backend, mode="hybrid")
        assert backend.native_hybrid is True  # overload says nothing about the feature


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_ingest_into_an_unreachable_cluster_is_one_error_line(tmp_path, monkeypatch):
    port = _closed_port()
    monkeypatch.setenv("CASEPLAN_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("CASEPLAN__KNOWLEDGE__BACKEND", "opensearch")
    monkeypatch.setenv("CASEPLAN__KNOWLEDGE__OPENSEARCH__URL", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("CASEPLAN__KNOWLEDGE__OPENSEARCH__TIMEOUT_S", "1")
    (tmp_path / "faq.md").write_text("# Returns\n\nReturns are free within 30 days.")
    result = CliRunner().invoke(app, ["ingest", str(tmp_path / "faq.md")])
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    assert re.search(rf"error: OpenSearch at 127.0.0.1:{port}: creating index \S+: cannot get an answer", result.output)


class BulkRefusesOne(FakeApi):
    """A cluster whose bulk endpoint refuses one document's chunk (a mapping conflict)."""

    def route(self, seen: Seen) -> Reply:
        if seen.method == "HEAD":
            return Reply(200)
        if seen.path == "/_bulk":
            lines = [line for line in seen.raw.decode().splitlines() if '"_id"' in line]
            items = []
            for line in lines:
                doc_id = re.search(r'"_id": ?"([^"]+)"', line).group(1)
                failed = doc_id.startswith("bad")
                items.append({"index": {"_index": "kb", "_id": doc_id, "status": 400 if failed else 201, **({"error": {"type": "mapper_parsing_exception", "reason": "failed to parse field [updated]"}} if failed else {})}})
            return Reply(200, {"errors": any("error" in i["index"] for i in items), "items": items})
        if seen.path.endswith("/_search"):
            return Reply(200, {"_scroll_id": "s1", "hits": {"hits": []}})
        return Reply(200, {"acknowledged": True})


def test_a_refused_bulk_item_names_the_document_and_stops_before_its_record():
    api = BulkRefusesOne()
    with LoopbackServer(api) as cluster:
        backend = backend_for(cluster.url, index="kb")
        docs = [Document(id="good", title="G", text="Fine text.", source="s"), Document(id="bad", title="B", text="Odd text.", source="s")]
        with pytest.raises(ClusterError, match=r"index of bad:0 in kb refused \(400: failed to parse field \[updated\]\); documents before it are stored"):
            backend.ingest(docs, source="s")
    records = [seen for seen in api.requests if seen.path == "/_bulk" and b"kb-documents" in seen.raw]
    assert [b'"good"' in seen.raw for seen in records] == [True]  # the refused document's hash was never recorded
