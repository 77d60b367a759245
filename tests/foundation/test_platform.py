"""Health, readiness, the OpenAPI schema and docs, settings, and API error shapes."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from django.db import OperationalError, connections

ROOT = Path(__file__).resolve().parents[2]


def test_healthz_is_ok_without_a_key(client):
    """Liveness needs neither a key nor the database."""
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readyz_is_ready_with_the_database_up(client, db):
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json()["database"] == "ok"


def test_readyz_is_503_when_the_database_is_unreachable(client, db, monkeypatch):
    """A database that cannot be reached makes the process not ready (503)."""

    def unreachable(*args, **kwargs):
        raise OperationalError("connection refused")

    # Patched on the wrapper class, so it covers whichever connection object serves the
    # request; monkeypatch puts the real method back after the test.
    monkeypatch.setattr(type(connections["default"]), "cursor", unreachable)
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json() == {"status": "unavailable", "database": "OperationalError"}
    monkeypatch.undo()
    assert client.get("/readyz").status_code == 200


def test_schema_is_an_openapi_3_document_with_the_execute_path(client, db):
    response = client.get("/api/schema/?format=json")
    assert response.status_code == 200
    schema = json.loads(response.content)
    assert schema["openapi"].startswith("3.")
    assert "post" in schema["paths"]["/api/v1/operations/execute"]
    assert "/api/v1/presets/{operation_type}" in schema["paths"]


def test_docs_page_loads_only_local_assets(client, db):
    """The Swagger page works offline: no script, style or image from another host."""
    response = client.get("/api/docs/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "swagger-ui" in html
    sources = re.findall(r'(?:src|href)\s*=\s*["\']([^"\']+)', html)
    assert any(s.endswith("swagger-ui-bundle.js") for s in sources)
    assert not [s for s in sources if re.match(r"(https?:)?//", s)]
    assert not re.search(r"https?://(?!127\.0\.0\.1|localhost)[^\s\"']+\.(js|css)", html)


def test_unknown_api_path_is_a_json_404(api_client):
    response = api_client.get("/api/v1/no-such-endpoint")
    assert response.status_code == 404
    assert response["Content-Type"].startswith("application/json")
    assert response.json()["error_code"] == "not_found"


@pytest.mark.parametrize(
    "body", [b'{"session_id": "s", ', b"not json at all", b"\xff\xfe\x00", b"[1, 2]", b"null"]
)
def test_malformed_execute_body_is_400_in_the_execute_shape(api_client, body):
    """A body that is no JSON object answers 400 `invalid_request`, in the same shape
    as every execute response (never a 500)."""
    response = api_client.post("/api/v1/operations/execute", body, content_type="application/json")
    assert response.status_code == 400
    payload = response.json()
    assert payload["error_code"] == "invalid_request"
    assert payload["success"] is False
    assert {"operation_id", "content", "was_cached", "telemetry", "budget"} <= set(payload)


# --- Settings (each in a fresh interpreter with a controlled environment) --------------------


def _settings_sandbox(tmp_path: Path) -> Path:
    """A copy of the settings module in a folder of its own, so that the project's own
    `.env` (if an operator created one) cannot leak into the test."""
    package = tmp_path / "aura_orchestrator"
    package.mkdir()
    (package / "__init__.py").write_text("")
    shutil.copy(ROOT / "aura_orchestrator" / "settings.py", package / "settings.py")
    return tmp_path


def _import_settings(
    tmp_path: Path, env: dict[str, str], code: str = ""
) -> subprocess.CompletedProcess:
    clean = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path), **env}
    return subprocess.run(
        [sys.executable, "-c", f"import aura_orchestrator.settings as s\n{code}"],
        cwd=_settings_sandbox(tmp_path),
        env={**clean, "PYTHONPATH": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_production_settings_without_a_secret_key_fail_clearly(tmp_path):
    """DEBUG off and no DJANGO_SECRET_KEY: import fails with ImproperlyConfigured that
    names the variable, rather than starting with a guessable key."""
    result = _import_settings(tmp_path, {"DEBUG": "false"})
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert "DJANGO_SECRET_KEY" in result.stderr


def test_empty_database_url_falls_back_to_sqlite(tmp_path):
    """`DATABASE_URL=` (set but empty) means the embedded SQLite file, not a broken {}."""
    result = _import_settings(
        tmp_path,
        {"DATABASE_URL": "", "DJANGO_SECRET_KEY": "k", "REDIS_URL": ""},
        "print(s.DATABASES['default']['ENGINE'], s.DATABASES['default']['NAME'])",
    )
    assert result.returncode == 0, result.stderr
    engine, name = result.stdout.split()
    assert engine == "django.db.backends.sqlite3"
    assert name.endswith("db.sqlite3")
