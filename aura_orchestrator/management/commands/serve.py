import atexit
import os
import shutil
import tempfile

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

# A request head (request line and header lines) this much longer than
# AURA["MAX_HEADER_BYTES"] is refused while it is still arriving; a shorter one reaches
# the application, whose check is exact (fastpath/app.py).
HEAD_SLACK_BYTES = 64 * 1024
LINGER_SECONDS = 10.0  # reading (and dropping) what the client still sends after a 431


class BoundedHeadProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a bound on the request head. httptools buffers a
    header of any size (a 16 MB one was accepted), and h11's bound
    (`h11_max_incomplete_event_size`) would cost its speed on every request; this counts
    the bytes read while a head is unfinished instead. A refused client gets the
    application's 431 body; the connection then drains its input for a while, as
    servers' lingering close does, so the client can read the answer before it closes."""

    _head_bytes: int | None = None  # of the unfinished head; None between heads
    _refused = False

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_bytes = -1  # began inside the chunk being parsed: not counted

    def on_headers_complete(self) -> None:
        self._head_bytes = None
        super().on_headers_complete()

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        super().data_received(data)
        if self._head_bytes is None or self.transport.is_closing():
            return
        if self._head_bytes < 0:
            self._head_bytes = 0
            return
        self._head_bytes += len(data)
        if self._head_bytes > settings.AURA["MAX_HEADER_BYTES"] + HEAD_SLACK_BYTES:
            self._refuse()

    def _refuse(self) -> None:
        from aura_orchestrator.fastpath.app import headers_too_large_reply  # after setup

        self._refused = True
        self.logger.warning("A request head passed %d bytes: refused with 431.", self._head_bytes)
        status, headers, body = headers_too_large_reply()
        lines = [b"%s: %s\r\n" % header for header in headers]
        self.transport.write(b"".join([STATUS_LINE[status], *lines, b"\r\n", body]))
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.loop.call_later(LINGER_SECONDS, self.transport.close)


def _enable_pool(database: dict) -> None:
    from django.db import connections

    options = database.setdefault("OPTIONS", {})
    if "pool" not in options:
        connections.close_all()  # one opened by the checks must close as it was opened
        options["pool"] = dict(settings.AURA["DB_POOL"])
    settings.AURA["ASYNC_POOL"] = True  # the pipeline's async store too (store/pg.py)


class Command(BaseCommand):
    help = "Serve the ASGI application with uvicorn (uvloop + httptools, bounded heads)."

    def add_arguments(self, parser):
        served = settings.AURA["SERVE"]  # HOST, PORT, WORKERS from the environment
        parser.add_argument("--host", default=served["HOST"])
        parser.add_argument("--port", type=int, default=served["PORT"])
        parser.add_argument("--workers", type=int, default=served["WORKERS"])
        parser.add_argument("--access-log", action="store_true", help="Log every request.")

    def handle(self, *args, host: str, port: int, workers: int, access_log: bool, **options):
        import uvicorn

        from aura_orchestrator.tracing import traces_endpoint

        if not 1 <= workers <= 64:
            raise CommandError("--workers must be between 1 and 64.")
        if not 0 < port < 65536:
            raise CommandError("--port must be between 1 and 65535.")
        if settings.DATABASES["default"]["ENGINE"].endswith("postgresql"):
            # Web workers use psycopg's pool (read by settings in each worker process).
            os.environ.setdefault("AURA_DB_POOL", "1")
            if workers == 1 and os.environ["AURA_DB_POOL"] == "1":
                # One worker runs in this process, whose settings were read before the
                # variable was set: without this, every db() unit would open a new
                # connection (about 10 ms here, more than the whole hot path).
                _enable_pool(settings.DATABASES["default"])
        os.environ.setdefault("AURA_SERVER_GC", "1")  # read by asgi.py in each worker
        os.environ.setdefault("AURA_WEB_WORKER", "1")  # asgi.py: sweep dead workers' journals
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "aura_orchestrator.settings")
        if "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
            # /metrics sums every worker's samples from files here; a fresh folder per start.
            metrics_dir = tempfile.mkdtemp(prefix="aura-metrics-")
            os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
            atexit.register(shutil.rmtree, metrics_dir, ignore_errors=True)
        self.stdout.write(f"Aura Orchestrator on http://{host}:{port}/ ({workers} worker(s))")
        uvicorn.run(
            "aura_orchestrator.asgi:application",
            host=host,
            port=port,
            workers=workers,
            # On only to send queued OpenTelemetry spans at shutdown (asgi.py, tracing.py).
            lifespan="on" if traces_endpoint(settings.OTEL) else "off",
            access_log=access_log,
            log_level=settings.LOG_LEVEL.lower(),
            loop="uvloop",
            http=BoundedHeadProtocol,
            # X-Forwarded-Proto/-For are believed from these addresses only (the proxy's):
            # then the scheme is https behind TLS and the client's address is the real one.
            proxy_headers=True,
            forwarded_allow_ips=settings.AURA["FORWARDED_ALLOW_IPS"],
            timeout_graceful_shutdown=10,
        )
