"""Settings for the test suite: the real settings, with a throwaway secret and django-q2
running tasks inline (a real cluster is started only by the test that needs one)."""

import os

os.environ.setdefault("DJANGO_SECRET_KEY", "test-only-secret-key-not-for-production")

from aura_orchestrator.settings import *  # noqa: F403
from aura_orchestrator.settings import Q_CLUSTER

Q_CLUSTER = {**Q_CLUSTER, "sync": True}
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # fast test users

# Each test process keeps its journal of unwritten finishes apart (store/journal.py):
# entries of another run, against another database, must never be replayed here.
import tempfile  # noqa: E402

from aura_orchestrator.settings import AURA  # noqa: E402

AURA = {**AURA, "JOURNAL_DIR": tempfile.mkdtemp(prefix="aura-test-journal-")}
