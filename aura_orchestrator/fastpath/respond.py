"""Responses of the fast path, byte for byte what Django's stack sends for the same
result: the views' own bodies and headers (`api.views.execute_reply`,
`gateway.views.chat_reply`), DRF's `Allow`, and the headers of the security and
clickjacking middleware, from the same settings."""

from collections.abc import AsyncGenerator, Awaitable, Callable

import orjson
from django.conf import settings
from rest_framework.utils.encoders import JSONEncoder

from aura_orchestrator.gateway.views import ChatReply

Send = Callable[[dict], Awaitable[None]]
Headers = list[tuple[bytes, bytes]]

# DRF's JSONRenderer encodes what JSON cannot hold with its JSONEncoder (dates, decimals,
# ...); orjson hands exactly those to it, so both paths write the same values.
_OPTIONS = (
    orjson.OPT_NON_STR_KEYS | orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS
)
_default = JSONEncoder().default
_ALLOW = (b"Allow", b"POST, OPTIONS")  # DRF's, for a view with post() only


def dumps(body: object) -> bytes:
    return orjson.dumps(body, default=_default, option=_OPTIONS)


def _encoded(headers: dict[str, str]) -> Headers:
    return [(name.encode("ascii"), value.encode("latin-1")) for name, value in headers.items()]


def xframe_headers() -> Headers:
    """XFrameOptionsMiddleware.process_response (DRF views are not exempt)."""
    return [(b"X-Frame-Options", settings.X_FRAME_OPTIONS.upper().encode())]


def security_headers(*, secure: bool) -> Headers:
    """SecurityMiddleware.process_response, from the same settings."""
    added: Headers = []
    if settings.SECURE_HSTS_SECONDS and secure:
        value = f"max-age={settings.SECURE_HSTS_SECONDS}"
        if settings.SECURE_HSTS_INCLUDE_SUBDOMAINS:
            value += "; includeSubDomains"
        if settings.SECURE_HSTS_PRELOAD:
            value += "; preload"
        added.append((b"Strict-Transport-Security", value.encode()))
    if settings.SECURE_CONTENT_TYPE_NOSNIFF:
        added.append((b"X-Content-Type-Options", b"nosniff"))
    policy = settings.SECURE_REFERRER_POLICY
    if policy:
        values = [v.strip() for v in policy.split(",")] if isinstance(policy, str) else policy
        added.append((b"Referrer-Policy", ",".join(values).encode()))
    if settings.SECURE_CROSS_ORIGIN_OPENER_POLICY:
        added.append(
            (b"Cross-Origin-Opener-Policy", settings.SECURE_CROSS_ORIGIN_OPENER_POLICY.encode())
        )
    return added


async def send_json(
    send: Send, *, status: int, body: object, headers: dict[str, str], secure: bool
) -> None:
    payload = dumps(body)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"Content-Type", b"application/json"),
                *_encoded(headers),
                _ALLOW,
                *xframe_headers(),
                (b"Content-Length", str(len(payload)).encode()),
                *security_headers(secure=secure),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})


async def send_stream(
    send: Send, reply: ChatReply, events: AsyncGenerator[bytes, None], *, secure: bool
) -> None:
    """The SSE body (`events`: `reply.events`), part by part, as Django sends a
    StreamingHttpResponse. However this ends (done, the client gone, the task cancelled, a
    send failing), the event iterator and the pipeline's stream are closed here, which
    settles the operation at once."""
    headers = dict(reply.headers)
    content_type = headers.pop("Content-Type")
    try:
        await send(
            {
                "type": "http.response.start",
                "status": reply.status,
                "headers": [
                    (b"Content-Type", content_type.encode()),
                    *_encoded(headers),
                    _ALLOW,
                    *xframe_headers(),
                    *security_headers(secure=secure),
                ],
            }
        )
        async for part in events:
            await send({"type": "http.response.body", "body": part, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
    finally:
        await events.aclose()
        if reply.stream is not None and reply.stream.chunks is not None:
            await reply.stream.chunks.aclose()
