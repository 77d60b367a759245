#!/usr/bin/env bash
# Install everything and run the whole suite: lint, types, migrations check, tests, browser tests.
# Uses DATABASE_URL when set (PostgreSQL in CI), else SQLite; REDIS_URL likewise.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check uv
.venv/bin/uv pip install --python .venv/bin/python -q -e '.[test]'

# Debian's Chromium for the browser tests (Playwright never downloads a browser here).
if [ ! -x /usr/bin/chromium ]; then
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi

export DJANGO_SECRET_KEY=${DJANGO_SECRET_KEY:-test-only-secret-key-not-for-production}
echo "== ruff"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
echo "== types (mypy; files and strictness in pyproject.toml)"
.venv/bin/mypy
echo "== migrations"
.venv/bin/python manage.py makemigrations --check --dry-run
echo "== OpenAPI schema (valid, no warnings)"
.venv/bin/python manage.py spectacular --validate --fail-on-warn --file /dev/null
echo "== tests (${DATABASE_URL:-sqlite})"
.venv/bin/python -m pytest -m "not browser" "$@"
echo "== browser tests"
.venv/bin/python -m pytest -m browser tests/browser
