"""opensearch-py's HTTP layer over httpx with caseplan's response bounds.

opensearch-py's own connections bound each socket read, not the whole response, so a cluster
(or a proxy in front of it) that sends a byte at a time holds a search and a worker thread for
as long as it likes, and one that never stops sending fills memory. This connection reads each
response with `tools.http.fetch`: whole within the request's timeout and at most
`MAX_RESPONSE_BYTES`. Failures become opensearch-py's own exception types, so its transport
still retries connection errors, timeouts and 502/503/504 as configured.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Mapping
from typing import Any
from urllib.parse import urlencode

import httpx
from opensearchpy import Connection
from opensearchpy.exceptions import ConnectionError as ClusterConnectionError
from opensearchpy.exceptions import ConnectionTimeout, SSLError, TransportError

from tools.http import MAX_RESPONSE_BYTES, ResponseRefused, fetch, retry_after_s
from tools.http_deadline import bounded_client


class BoundedHttpxConnection(Connection):
    """One cluster node; thread-safe (httpx's client pools connections)."""

    def __init__(
        self,
        host: str = "localhost",
        port: int | None = None,
        http_auth: tuple[str, str] | None = None,
        verify_certs: bool = True,
        ca_certs: str | None = None,
        max_response_bytes: int = MAX_RESPONSE_BYTES,
        **kwargs: Any,
    ) -> None:
        super().__init__(host=host, port=port, **kwargs)
        self.max_response_bytes = max_response_bytes
        verify: bool | str = (ca_certs or True) if verify_certs else False
        auth = tuple(http_auth) if http_auth else None
        self.client = bounded_client(base_url=self.host, auth=auth, verify=verify, timeout=self.timeout)  # type: ignore[arg-type]

    def perform_request(
        self,
        method: str,
        url: str,
        params: Mapping[str, Any] | None = None,
        body: bytes | None = None,
        timeout: float | None = None,
        ignore: Collection[int] = (),
        headers: Mapping[str, str] | None = None,
    ) -> tuple[int, Mapping[str, str], str]:
        path = self.url_prefix + url + (f"?{urlencode(params)}" if params else "")  # opensearch-py gives bytes values
        seconds = float(timeout or self.timeout)
        started = time.monotonic()
        try:
            response = fetch(
                self.client,
                method,
                path,
                deadline_s=seconds,
                max_bytes=self.max_response_bytes,
                content=body,
                headers={**self.headers, **(headers or {})},
                timeout=seconds,
            )
        except ResponseRefused as exc:
            self.log_request_fail(method, self.host + path, path, body, time.monotonic() - started, exception=exc)
            if exc.transient:
                raise ConnectionTimeout("TIMEOUT", str(exc), exc) from exc
            raise TransportError("N/A", str(exc), exc) from exc  # a status no transport retries
        except httpx.TimeoutException as exc:
            raise ConnectionTimeout("TIMEOUT", str(exc) or "timed out", exc) from exc
        except httpx.ConnectError as exc:
            if "SSL" in str(exc) or "certificate" in str(exc).lower():
                raise SSLError("N/A", str(exc), exc) from exc
            raise ClusterConnectionError("N/A", str(exc) or "cannot connect", exc) from exc
        except httpx.HTTPError as exc:
            raise ClusterConnectionError("N/A", str(exc) or type(exc).__name__, exc) from exc
        raw = response.content.decode("utf-8", "replace")
        duration = time.monotonic() - started
        if not 200 <= response.status_code < 300 and response.status_code not in ignore:
            self.log_request_fail(method, self.host + path, path, body, duration, response.status_code, raw)
            try:
                self._raise_error(response.status_code, raw, response.headers.get("content-type"))
            except TransportError as exc:
                exc.retry_after = retry_after_s(response)  # type: ignore[attr-defined]  (a 429's or 503's wait)
                raise
        self.log_request_success(method, self.host + path, path, body, response.status_code, raw, duration)
        return response.status_code, dict(response.headers), raw

    def close(self) -> None:
        self.client.close()
