"""The SQL store exists on PostgreSQL only: on SQLite its module is not collected (rather
than skipped), as tests/chaos."""

from django.conf import settings

if not settings.DATABASES["default"]["ENGINE"].endswith("postgresql"):
    collect_ignore = ["test_store_sql.py"]
