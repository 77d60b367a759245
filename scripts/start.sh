#!/usr/bin/env bash
# Install and start the whole product on the embedded default: SQLite, django-q2's ORM
# broker, local-memory cache. API, admin and dashboards on http://127.0.0.1:8000/, with
# the background worker (qcluster) alongside. Set DATABASE_URL / REDIS_URL for production.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check uv
.venv/bin/uv pip install --python .venv/bin/python -q -e .

if [ ! -f .env ]; then
  # A secret of this install's own; .env is git-ignored.
  printf 'DJANGO_SECRET_KEY=%s\nDEBUG=false\n' \
    "$(.venv/bin/python -c 'import secrets; print(secrets.token_urlsafe(50))')" > .env
  echo "Wrote .env with a new DJANGO_SECRET_KEY."
fi

.venv/bin/python manage.py migrate --noinput
.venv/bin/python manage.py collectstatic --noinput -v 0
.venv/bin/python manage.py bootstrap

.venv/bin/python manage.py qcluster &
QCLUSTER_PID=$!
trap 'kill -TERM "$QCLUSTER_PID" 2>/dev/null || true; wait "$QCLUSTER_PID" 2>/dev/null || true' EXIT INT TERM

echo
echo "Admin:      http://${HOST:-127.0.0.1}:${PORT:-8000}/admin/"
echo "Dashboards: http://${HOST:-127.0.0.1}:${PORT:-8000}/dashboard/"
echo "API docs:   http://${HOST:-127.0.0.1}:${PORT:-8000}/api/docs/"
echo "No provider key? Fill it with sample data: .venv/bin/python manage.py demo"
.venv/bin/python manage.py serve --host "${HOST:-127.0.0.1}" --port "${PORT:-8000}" \
  --workers "${WORKERS:-1}"
