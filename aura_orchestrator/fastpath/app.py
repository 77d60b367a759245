"""The ASGI callable in front of Django: routing, reading the body, delegation, and the
client-disconnect watch."""

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable

from django.conf import settings

from aura_orchestrator import errors, pipeline
from aura_orchestrator.api.bodies import execute_request
from aura_orchestrator.api.exceptions import error_body, error_reply, header_fields_too_large
from aura_orchestrator.api.jsonbody import parse_json_body
from aura_orchestrator.api.views import execute_error_body, execute_reply, principal_for_key
from aura_orchestrator.db import db
from aura_orchestrator.fastpath import guard, respond, validate
from aura_orchestrator.fastpath.validate import Delegate
from aura_orchestrator.gateway import render
from aura_orchestrator.gateway.translate import chat_call_from
from aura_orchestrator.gateway.views import chat_reply
from aura_orchestrator.tenancy.selectors import last_used_due, last_used_write

logger = logging.getLogger(__name__)

EXECUTE_PATH = "/api/v1/operations/execute"
CHAT_PATH = "/v1/chat/completions"
_INTERCEPTED = frozenset((EXECUTE_PATH, CHAT_PATH))

Receive = Callable[[], Awaitable[dict]]
ASGIApp = Callable[[dict, Receive, respond.Send], Awaitable[None]]


async def _write_last_used() -> None:
    try:
        await db(last_used_write)
    except Exception:  # a hint for operators: never worth failing a request over
        logger.warning("fast path: writing api keys' last_used_at failed", exc_info=True)


def header_bytes(scope: dict) -> int:
    """What AURA["MAX_HEADER_BYTES"] bounds: the request headers' names and values."""
    return sum(len(name) + len(value) for name, value in scope.get("headers", ()))


def headers_too_large_reply() -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """(status, headers, body) of the 431 for oversized request headers, here and in
    `serve`'s HTTP protocol, which refuses a head far beyond the limit before reading it
    all."""
    body = respond.dumps(error_body(header_fields_too_large(settings.AURA["MAX_HEADER_BYTES"])))
    headers = [
        (b"Content-Type", b"application/json"),
        (b"Content-Length", str(len(body)).encode()),
        (b"Connection", b"close"),
        *respond.security_headers(secure=False),
    ]
    return 431, headers, body


def replayed(messages: list[dict], receive: Receive) -> Receive:
    """A `receive` that hands out `messages` first, then the client's own."""
    pending = deque(messages)

    async def replay() -> dict:
        if pending:
            return pending.popleft()
        return await receive()

    return replay


class FastFront:
    """`POST /api/v1/operations/execute` and `POST /v1/chat/completions`, when clean and
    authenticated from the memo, are parsed (or refused) and run straight from ASGI; every
    other request, and every one whose transport or key the fast path has the slightest
    doubt about, is Django's."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app  # Django's ASGI application
        guard.front_serves()  # at start-up: a configuration it does not emulate is logged now

    async def __call__(self, scope: dict, receive: Receive, send: respond.Send) -> None:
        if scope["type"] == "http":
            # Every path, Django's too: oversized headers are refused before anyone reads them.
            if header_bytes(scope) > settings.AURA["MAX_HEADER_BYTES"]:
                status, headers, body = headers_too_large_reply()
                await send({"type": "http.response.start", "status": status, "headers": headers})
                return await send({"type": "http.response.body", "body": body})
            if scope["method"] == "POST":
                path = scope["path"]
                # Only while the configuration is the one it emulates (guard.py).
                if path in _INTERCEPTED and guard.front_serves():
                    return await self._intercept(path, scope, receive, send)
        return await self.app(scope, receive, send)

    async def _delegate(self, reason: object, scope: dict, receive: Receive, send) -> None:
        logger.debug("fast path: %s delegated to Django: %s", scope["path"], reason)
        return await self.app(scope, receive, send)

    async def _intercept(self, path: str, scope: dict, receive: Receive, send) -> None:
        # Headers, host, content type and key first: a request refused here has not been
        # read yet, so Django simply reads it.
        try:
            headers = validate.request_headers(scope)
            length = validate.check_transport(scope, headers, negotiate=path == EXECUTE_PATH)
            api_key = validate.authenticate(headers)
            secure = validate.is_secure(scope, headers)
        except Delegate as reason:
            return await self._delegate(reason, scope, receive, send)
        except Exception:
            logger.exception("fast path: checking %s failed; delegated", path)
            return await self._delegate("error", scope, receive, send)
        if last_used_due():  # at most once a minute per key: its last_used_at, in a thread
            await _write_last_used()

        messages: list[dict] = []
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":  # the client went away: Django's case
                return await self._delegate("disconnect", scope, replayed(messages, receive), send)
            chunk = message.get("body", b"")
            size += len(chunk)
            chunks.append(chunk)
            if size > length:
                return await self._delegate("body size", scope, replayed(messages, receive), send)
            if not message.get("more_body", False):
                break
        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        whole = [{"type": "http.request", "body": body, "more_body": False}]
        if size != length:
            return await self._delegate("body size", scope, replayed(whole, receive), send)

        # Parsed as Django's views parse it; a refusal is answered here, through the one
        # error table, exactly as the view would answer it.
        render_error = execute_error_body if path == EXECUTE_PATH else render.error_body
        try:
            principal = principal_for_key(api_key)
            if path == EXECUTE_PATH:
                operation = execute_request(parse_json_body(body))
                work = self._execute(operation, principal, send, secure)
            else:
                call = chat_call_from(
                    body=parse_json_body(body),
                    headers=headers,
                    default_session=f"gateway-{api_key.prefix}",
                )
                work = self._chat(call, principal, send, secure)
        except errors.InvalidRequest as refusal:
            status, payload, extra = error_reply(refusal, render_error, where="the fast path")
            return await respond.send_json(
                send, status=status, body=payload, headers=extra, secure=secure
            )
        except Exception:
            logger.exception("fast path: parsing %s failed; delegated", path)
            return await self._delegate("error", scope, replayed(whole, receive), send)
        await self._until_disconnect(receive, work)

    async def _until_disconnect(self, receive: Receive, work: Awaitable[None]) -> None:
        """Run `work` in this task, cancelled if the client disconnects first (as Django's
        ASGI handler does with its view): the pipeline then hands back its reservation,
        and a stream is settled for what was sent."""
        task = asyncio.current_task()
        assert task is not None  # called from the request's task
        gone = False

        async def listen() -> None:
            nonlocal gone
            message = await receive()
            if message["type"] == "http.disconnect":
                gone = True
                task.cancel()

        listener = asyncio.get_running_loop().create_task(listen())
        try:
            await work
        except asyncio.CancelledError:
            # Ours: absorb it. Anyone else's (the server shutting down): pass it on.
            if gone and task.uncancel() == 0:
                return
            raise
        finally:
            listener.cancel()

    async def _execute(
        self, op: pipeline.OperationRequest, principal: pipeline.Principal, send, secure: bool
    ) -> None:
        try:
            result = await pipeline.execute(op, principal=principal)
            status, body, headers = execute_reply(result)
        except Exception as exc:
            status, body, headers = error_reply(exc, execute_error_body, where="the fast path")
        await respond.send_json(send, status=status, body=body, headers=headers, secure=secure)

    async def _chat(self, call, principal: pipeline.Principal, send, secure: bool) -> None:
        try:
            reply = await chat_reply(call, principal=principal)
        except Exception as exc:
            status, body, headers = error_reply(exc, render.error_body, where="the fast path")
            return await respond.send_json(
                send, status=status, body=body, headers=headers, secure=secure
            )
        if reply.events is not None:
            return await respond.send_stream(send, reply, reply.events, secure=secure)
        await respond.send_json(
            send, status=reply.status, body=reply.body, headers=reply.headers, secure=secure
        )
