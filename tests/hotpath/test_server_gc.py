"""Web workers tune the garbage collector (aura_orchestrator/asgi.py); other processes
(tests, commands, jobs) keep Python's defaults."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROBE = "import gc, aura_orchestrator.asgi; print(gc.get_threshold()[0], gc.get_freeze_count() > 0)"


def _probe(**env: str) -> list[str]:
    """gen-0 threshold and whether objects were frozen, in a fresh process."""
    base = {k: v for k, v in os.environ.items() if k != "AURA_SERVER_GC"}
    out = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=ROOT,
        env={**base, "DJANGO_SECRET_KEY": "x", **env},
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return out.stdout.split()[-2:]


def test_a_web_worker_freezes_start_up_objects_and_collects_less_often():
    assert _probe(AURA_SERVER_GC="1") == ["20000", "True"]


def test_other_processes_keep_the_defaults():
    assert _probe() == ["700", "False"]
