import atexit
import os
import shutil
import tempfile

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError


def _enable_pool(database: dict) -> None:
    from django.db import connections

    options = database.setdefault("OPTIONS", {})
    if "pool" not in options:
        connections.close_all()  # one opened by the checks must close as it was opened
        options["pool"] = dict(settings.AURA["DB_POOL"])
    settings.AURA["ASYNC_POOL"] = True  # the pipeline's async store too (store/pg.py)


class Command(BaseCommand):
    help = "Serve the ASGI application with uvicorn (uvloop + httptools)."

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--workers", type=int, default=1)
        parser.add_argument("--access-log", action="store_true", help="Log every request.")

    def handle(self, *args, host: str, port: int, workers: int, access_log: bool, **options):
        import uvicorn

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
            lifespan="off",
            access_log=access_log,
            log_level=settings.LOG_LEVEL.lower(),
            loop="uvloop",
            http="httptools",
            timeout_graceful_shutdown=10,
        )
