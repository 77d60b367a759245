"""HTTP plumbing shared by the adapters: the pooled client, error translation and SSE parsing."""

from __future__ import annotations

import asyncio
import itertools
import json
import weakref
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
import orjson

from .base import (
    ProviderAuthError,
    ProviderBadResponse,
    ProviderConfig,
    ProviderError,
    ProviderRateLimited,
    ProviderRequestRejected,
    ProviderTimeout,
    ProviderUnavailable,
)

MAX_DETAIL_CHARS = 200

# httpcore's pool scans ALL its connections on every request and every response close
# (`_assign_requests_to_connections`; `has_expired` polls each idle socket): with hundreds
# in flight that scan was most of a request's CPU (bench/README.md). So each event loop
# has a few small pools instead of one big one, used in turn: the same connections in
# all, a scan a POOL_SHARDS-th as long. Keep-alive stays bounded per pool.
POOL_SHARDS = 16
POOL_LIMITS = httpx.Limits(max_connections=256, max_keepalive_connections=32)
_SSL_CONTEXT = httpx.create_ssl_context()  # one for all pools (each would build its own)


class _Transports:
    """The pooled transports of one event loop, handed out round-robin. The pipeline
    talks to httpx's transport directly: an `AsyncClient` adds per request an auth flow,
    redirect handling, cookie extraction and a wrapped stream, none of which a provider
    call uses (about a fifth of an upstream call's CPU, measured)."""

    def __init__(self) -> None:
        self.transports = [
            httpx.AsyncHTTPTransport(verify=_SSL_CONTEXT, limits=POOL_LIMITS)
            for _ in range(POOL_SHARDS)
        ]
        self.turn = itertools.cycle(self.transports)
        self.closed = False

    def next(self) -> httpx.AsyncHTTPTransport:
        return next(self.turn)

    async def aclose(self) -> None:
        self.closed = True
        for transport in self.transports:
            await transport.aclose()


# Transports are bound to the loop they first ran on; key by loop so several loops
# (tests, threads) never share one, and let a closed loop's transports go with it.
_transports: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Transports] = (
    weakref.WeakKeyDictionary()
)

ErrorTypeMap = Mapping[str, type[ProviderError]]
# What the adapters send through: a pooled transport (the pipeline), or any client (tests,
# commands, with their own transports).
Sender = httpx.AsyncClient | httpx.AsyncBaseTransport


def get_transport() -> httpx.AsyncHTTPTransport:
    """A pooled transport of the running event loop (the next of its POOL_SHARDS)."""
    loop = asyncio.get_running_loop()
    transports = _transports.get(loop)
    if transports is None or transports.closed:
        transports = _transports[loop] = _Transports()
    return transports.next()


async def close_transports() -> None:
    """Close the running loop's transports; forget those of loops already closed."""
    loop = asyncio.get_running_loop()
    for closed in [other for other in list(_transports) if other.is_closed()]:
        _transports.pop(closed, None)
    transports = _transports.pop(loop, None)
    if transports is not None:
        await transports.aclose()


async def send(via: Sender, request: httpx.Request, *, stream: bool = False) -> httpx.Response:
    """`request` through a client or straight through a transport; the body is read (and
    the connection handed back) unless `stream`, as `AsyncClient.send` does."""
    if isinstance(via, httpx.AsyncClient):
        return await via.send(request, stream=stream)
    response = await via.handle_async_request(request)
    response.request = request
    if not stream:
        try:
            await response.aread()
        finally:
            await response.aclose()
    return response


USER_AGENT = "aura-orchestrator"


def json_request(
    url: str, body: dict[str, Any], *, headers: dict[str, str], timeout: float
) -> httpx.Request:
    """A POST with a JSON body, built directly (no client-wide defaults to merge: we set
    none), the body encoded with orjson."""
    try:
        content = orjson.dumps(body)
    except TypeError:  # an integer beyond 64 bits in a caller's schema: stdlib copes
        content = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
    return httpx.Request(
        "POST",
        url,
        content=content,
        headers={
            "Content-Type": "application/json",
            "Accept": "application/json",
            "User-Agent": USER_AGENT,
            **headers,
        },
        extensions={"timeout": httpx.Timeout(timeout).as_dict()},
    )


@asynccontextmanager
async def aclosing_response(response: httpx.Response) -> AsyncIterator[httpx.Response]:
    """A streamed response, closed however its reading ends (as `client.stream` does)."""
    try:
        yield response
    finally:
        await response.aclose()


def redact(text: str, config: ProviderConfig) -> str:
    """Upstreams sometimes echo the key back in error bodies: never let it travel further."""
    if config.api_key:
        text = text.replace(config.api_key, "[redacted]")
    return text


def make_error(
    cls: type[ProviderError],
    config: ProviderConfig,
    detail: str,
    *,
    status: int | None = None,
    retry_after: float | None = None,
    code: str | None = None,
) -> ProviderError:
    return cls(
        redact(f"{config.name}: {detail}", config),
        provider=config.name,
        status=status,
        retry_after=retry_after,
        code=code,
    )


def truncate(text: str, limit: int = MAX_DETAIL_CHARS) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def parse_retry_after(headers: httpx.Headers, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from `retry-after-ms`, or `Retry-After` as seconds or an HTTP-date."""
    millis = headers.get("retry-after-ms")
    if millis is not None:
        try:
            return max(float(millis) / 1000.0, 0.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    now = now or datetime.now(UTC)
    return max((when - now).total_seconds(), 0.0)


def error_details(body: Any) -> tuple[str | None, str | None, str | None]:
    """(message, code, type) from OpenAI `{"error": {...}}`, Anthropic and common other shapes."""
    if not isinstance(body, dict):
        return None, None, None
    error = body.get("error")
    if isinstance(error, dict):
        message = error.get("message")
        code = error.get("code")
        type_ = error.get("type")
        return (
            str(message) if message is not None else None,
            str(code) if code is not None else (str(type_) if type_ is not None else None),
            str(type_) if type_ is not None else None,
        )
    if isinstance(error, str):
        return error, None, None
    for key in ("message", "detail"):
        if isinstance(body.get(key), str):
            return body[key], None, None
    return None, None, None


def class_for_status(status: int) -> type[ProviderError]:
    if status == 429:
        return ProviderRateLimited
    if status in (401, 403):
        return ProviderAuthError
    if status == 408:
        return ProviderTimeout
    if status >= 500:  # 529 "overloaded" included
        return ProviderUnavailable
    return ProviderRequestRejected


def error_for_response(
    config: ProviderConfig, response: httpx.Response, *, error_types: ErrorTypeMap | None = None
) -> ProviderError:
    """Translate a non-2xx response (body already read) by status and, if known, error type."""
    try:
        body = response.json()
    except ValueError:
        body = None
    message, code, type_ = error_details(body)
    if message is None and body is None:
        message = response.text or response.reason_phrase
    cls = (error_types or {}).get(type_ or "") or class_for_status(response.status_code)
    detail = f"HTTP {response.status_code} from upstream"
    if message:
        detail += f": {truncate(message)}"
    return make_error(
        cls,
        config,
        detail,
        status=response.status_code,
        retry_after=parse_retry_after(response.headers),
        code=code,
    )


def error_for_stream_event(
    config: ProviderConfig, body: Any, *, error_types: ErrorTypeMap | None = None
) -> ProviderError:
    """An error reported inside a 200 stream: the status is gone, so classify by error type."""
    message, code, type_ = error_details(body)
    cls = (error_types or {}).get(type_ or "", ProviderUnavailable)
    return make_error(
        cls, config, f"error in stream: {truncate(message or 'unknown error')}", code=code
    )


async def raise_for_status(
    config: ProviderConfig, response: httpx.Response, *, error_types: ErrorTypeMap | None = None
) -> None:
    if response.is_success:
        return
    await response.aread()
    raise error_for_response(config, response, error_types=error_types)


def json_body(config: ProviderConfig, response: httpx.Response) -> dict[str, Any]:
    try:
        body = orjson.loads(response.content)
    except ValueError:
        raise make_error(
            ProviderBadResponse,
            config,
            f"HTTP {response.status_code} with a body that is not JSON",
            status=response.status_code,
        ) from None
    if not isinstance(body, dict):
        raise bad_response(config, "response body is not a JSON object", response.status_code)
    return body


def bad_response(config: ProviderConfig, detail: str, status: int | None = None) -> ProviderError:
    return make_error(ProviderBadResponse, config, detail, status=status)


def parse_event_json(config: ProviderConfig, data: str) -> dict[str, Any]:
    try:
        event = orjson.loads(data)
    except ValueError:
        raise bad_response(config, f"malformed stream event: {truncate(data, 80)}") from None
    if not isinstance(event, dict):
        raise bad_response(config, "stream event is not a JSON object")
    return event


@contextmanager
def translate_transport_errors(config: ProviderConfig, timeout_seconds: float) -> Iterator[None]:
    """Map httpx exceptions to provider errors by type (never by message text)."""
    try:
        yield
    except httpx.TimeoutException as exc:
        raise make_error(
            ProviderTimeout,
            config,
            f"no answer within {timeout_seconds:g}s ({type(exc).__name__})",
        ) from exc
    except (httpx.UnsupportedProtocol, httpx.LocalProtocolError, httpx.InvalidURL) as exc:
        # Our own configuration is wrong (bad base URL, bad header): retrying cannot help.
        raise make_error(
            ProviderRequestRejected, config, f"invalid request: {truncate(str(exc))}"
        ) from exc
    except httpx.DecodingError as exc:
        raise bad_response(config, f"undecodable body: {truncate(str(exc))}") from exc
    except httpx.TransportError as exc:
        detail = f"connection failed ({type(exc).__name__})"
        if str(exc):
            detail += f": {truncate(str(exc))}"
        raise make_error(ProviderUnavailable, config, detail) from exc


@dataclass(frozen=True, slots=True)
class SSEEvent:
    event: str | None
    data: str


async def iter_sse(response: httpx.Response) -> AsyncIterator[SSEEvent]:
    """Server-sent events of a streaming response, per the WHATWG event-stream rules."""
    event: str | None = None
    data: list[str] = []
    async for line in response.aiter_lines():
        if not line:
            if data:
                yield SSEEvent(event, "\n".join(data))
            event, data = None, []
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "data":
            data.append(value)
        elif name == "event":
            event = value
    if data:
        yield SSEEvent(event, "\n".join(data))
