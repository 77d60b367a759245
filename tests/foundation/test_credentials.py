"""Provider keys and webhook secrets: encrypted at rest (aura_orchestrator/crypto.py),
shown only as their last four characters, rotated by command; key variables only those
an operator allowed (catalog/secrets.py), refused at save and at call time."""

import base64
import io
import os
import pickle
import signal
import subprocess
import sys
import time
import uuid
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from asgiref.sync import sync_to_async
from cryptography.fernet import Fernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.contrib.admin.models import LogEntry
from django.core.checks import run_checks
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command
from django.db import connection
from django.test import override_settings
from django.urls import reverse

from aura_orchestrator.catalog.models import Provider
from aura_orchestrator.catalog.secrets import env_refusal
from aura_orchestrator.catalog.selectors import route_chain_resolve
from aura_orchestrator.catalog.services import provider_configure
from aura_orchestrator.crypto import Sealed, SecretUnreadable, decrypt, encrypt
from budgets.spend_models import AlertEndpoint
from tests.conftest import INPUT_PRICE, OUTPUT_PRICE, ROOT, _test_database_url

EXECUTE = "/api/v1/operations/execute"
RAW_KEY = "sk-proj-RAWKEY0123456789abcdefWXYZ"
HOOK_SECRET = "whsec-RAWHOOK0123456789-abcd"


def _body(session: str = "creds-1") -> dict:
    return {"session_id": session, "operation_type": "completion", "prompt": "hi"}


def _stored_provider(upstream, *, key: str = RAW_KEY, name: str = "primary"):
    return provider_configure(
        name=name,
        kind="openai",
        base_url=upstream.openai_base_url,
        api_key_env="",
        api_key=key,
        model="sim-gpt",
        input_price=INPUT_PRICE,
        output_price=OUTPUT_PRICE,
        make_default=True,
    ).provider


def _column(model, pk: int, column: str) -> str:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {column} FROM {model._meta.db_table} WHERE id = %s", [pk])
        return cursor.fetchone()[0]


# --- encryption ------------------------------------------------------------------------------


def test_a_secret_round_trips_and_prints_only_its_last_four():
    token = encrypt(RAW_KEY)
    assert RAW_KEY not in token and decrypt(token) == RAW_KEY
    sealed = Sealed(token=token)
    assert sealed.reveal() == RAW_KEY
    for shown in (repr(sealed), str(sealed), f"{sealed}", repr([sealed])):
        assert RAW_KEY not in shown and "…WXYZ" in shown
    # Pickled (a cache, a task's arguments): the token only, never the text.
    typed = Sealed(text=RAW_KEY)
    dumped = pickle.dumps(typed)
    assert RAW_KEY.encode() not in dumped
    assert pickle.loads(dumped).reveal() == RAW_KEY
    assert not Sealed(text="") and Sealed(text="").token == ""


@pytest.mark.django_db
def test_the_database_holds_tokens_and_the_model_a_sealed_value(fake_upstream, project):
    provider = _stored_provider(fake_upstream)
    column = _column(Provider, provider.pk, "api_key")
    assert RAW_KEY not in column and decrypt(column) == RAW_KEY
    provider = Provider.objects.get(pk=provider.pk)
    assert isinstance(provider.api_key, Sealed) and provider.api_key.hint == "…WXYZ"
    assert provider.api_key.reveal() == RAW_KEY
    endpoint = AlertEndpoint.objects.create(project=project, url="https://h.example/x")
    endpoint.secret = HOOK_SECRET
    endpoint.save()
    assert decrypt(_column(AlertEndpoint, endpoint.pk, "secret")) == HOOK_SECRET
    # The route the adapter is built from hides the key in its repr.
    route = route_chain_resolve(provider_names=None, model=None)[0]
    assert RAW_KEY not in repr(route) and route.api_key.reveal() == RAW_KEY


@pytest.mark.django_db
def test_without_keys_one_is_derived_from_the_secret_key_by_hkdf(fake_upstream, settings):
    """Documented derivation: HKDF-SHA256, no salt, info "aura-orchestrator encryption
    key v1", 32 bytes, url-safe base64: the stored token opens with that key alone."""
    settings.ENCRYPTION_KEYS = []
    provider = _stored_provider(fake_upstream)
    raw = HKDF(
        algorithm=hashes.SHA256(),
        length=32,
        salt=None,
        info=b"aura-orchestrator encryption key v1",
    ).derive(settings.SECRET_KEY.encode())
    derived = Fernet(base64.urlsafe_b64encode(raw))
    column = _column(Provider, provider.pk, "api_key")
    assert derived.decrypt(column.encode()).decode() == RAW_KEY


@pytest.mark.django_db
def test_check_deploy_warns_without_own_keys_and_errors_on_a_bad_one(settings):
    settings.ENCRYPTION_KEYS = []
    ids = {m.id for m in run_checks(include_deployment_checks=True)}
    assert "aura.W010" in ids
    assert "aura.W010" not in {m.id for m in run_checks()}  # a deploy check only
    settings.ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    assert "aura.W010" not in {m.id for m in run_checks(include_deployment_checks=True)}
    settings.ENCRYPTION_KEYS = ["not-a-key"]
    assert "aura.E010" in {m.id for m in run_checks()}


@pytest.mark.django_db
def test_rotation_reencrypts_every_secret_once_and_old_keys_can_go(fake_upstream, project):
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    with override_settings(ENCRYPTION_KEYS=[old]):
        provider = _stored_provider(fake_upstream)
        endpoint = AlertEndpoint.objects.create(
            project=project, url="https://h.example/x", secret=HOOK_SECRET
        )
    before = _column(Provider, provider.pk, "api_key")
    assert Fernet(old.encode()).decrypt(before.encode()).decode() == RAW_KEY

    with override_settings(ENCRYPTION_KEYS=[new, old]):  # MultiFernet: all decrypt
        assert Provider.objects.get(pk=provider.pk).api_key.reveal() == RAW_KEY
        out = io.StringIO()
        call_command("rotate_encryption_key", stdout=out)
        assert "Re-encrypted 2 value(s); 0 already" in out.getvalue(), out.getvalue()
        assert "catalog.Provider.api_key: 1 re-encrypted" in out.getvalue()
        assert "budgets.AlertEndpoint.secret: 1 re-encrypted" in out.getvalue()
        out = io.StringIO()
        call_command("rotate_encryption_key", stdout=out)  # idempotent
        assert "Re-encrypted 0 value(s); 2 already under the current key" in out.getvalue()

    after = _column(Provider, provider.pk, "api_key")
    assert after != before and RAW_KEY not in after
    with override_settings(ENCRYPTION_KEYS=[new]):  # the old key removed
        assert Provider.objects.get(pk=provider.pk).api_key.reveal() == RAW_KEY
        assert AlertEndpoint.objects.get(pk=endpoint.pk).secret.reveal() == HOOK_SECRET
    with override_settings(ENCRYPTION_KEYS=[old]):  # only the retired key: unreadable
        with pytest.raises(SecretUnreadable):
            Provider.objects.get(pk=provider.pk).api_key.reveal()
        with pytest.raises(CommandError, match="cannot be decrypted"):
            call_command("rotate_encryption_key", stdout=io.StringIO())


@pytest.mark.django_db(transaction=True)
def test_the_data_migration_encrypts_webhook_secrets_stored_in_clear(project):
    """budgets 0003: rows of 0002 (secret in clear) come out as tokens, and back."""
    from django.db.migrations.executor import MigrationExecutor

    executor = MigrationExecutor(connection)
    executor.migrate([("budgets", "0002_spend_budgets")])
    try:
        with connection.cursor() as cursor:
            cursor.execute(
                "INSERT INTO budgets_alertendpoint (project_id, url, secret, active, created_at)"
                " VALUES (%s, %s, %s, %s, %s)",
                [project.pk, "https://h.example/old", HOOK_SECRET, True, "2026-01-01T00:00:00Z"],
            )
    finally:
        # Forward to the latest of every app again (later migrations than 0003 too: the
        # rest of the run needs their tables).
        executor = MigrationExecutor(connection)
        executor.loader.build_graph()
        executor.migrate(executor.loader.graph.leaf_nodes())
    endpoint = AlertEndpoint.objects.get(url="https://h.example/old")
    column = _column(AlertEndpoint, endpoint.pk, "secret")
    assert column != HOOK_SECRET and decrypt(column) == HOOK_SECRET
    assert endpoint.secret.reveal() == HOOK_SECRET


# --- the admin ------------------------------------------------------------------------------


def _provider_form(**fields) -> dict:
    return {
        "name": "primary",
        "kind": "openai",
        "base_url": "http://127.0.0.1:9/v1",
        "api_key_env": "",
        "new_api_key": "",
        "enabled": "on",
        "priority": "100",
        "models-TOTAL_FORMS": "0",
        "models-INITIAL_FORMS": "0",
        **fields,
    }


@pytest.mark.django_db
def test_a_key_typed_in_the_admin_is_stored_encrypted_and_shown_as_its_last_four(admin_client):
    response = admin_client.post(
        reverse("admin:catalog_provider_add"), _provider_form(new_api_key=RAW_KEY)
    )
    assert response.status_code == 302, response.content.decode()[-3000:]
    provider = Provider.objects.get(name="primary")
    assert provider.api_key.reveal() == RAW_KEY
    assert RAW_KEY not in _column(Provider, provider.pk, "api_key")

    change = reverse("admin:catalog_provider_change", args=[provider.pk])
    pages = {
        "changelist": admin_client.get(reverse("admin:catalog_provider_changelist")),
        "change": admin_client.get(change),
        "history": admin_client.get(reverse("admin:catalog_provider_history", args=[provider.pk])),
    }
    for name, page in pages.items():
        html = page.content.decode()
        assert page.status_code == 200 and RAW_KEY not in html, name
        assert RAW_KEY[-8:] not in html, name  # not even more than the last four
    assert "stored …WXYZ" in pages["changelist"].content.decode()
    assert "stored …WXYZ" in pages["change"].content.decode()

    # Blank keeps the key; a new one replaces it; "remove" clears it. Never in the history.
    assert admin_client.post(change, _provider_form(priority="50")).status_code == 302
    assert Provider.objects.get(pk=provider.pk).api_key.reveal() == RAW_KEY
    second = "sk-second-key-0000000000ABCD"
    assert admin_client.post(change, _provider_form(new_api_key=second)).status_code == 302
    assert Provider.objects.get(pk=provider.pk).api_key.reveal() == second
    both = admin_client.post(change, _provider_form(new_api_key=RAW_KEY, clear_api_key="on"))
    assert both.status_code == 200 and "Either type a new key" in both.content.decode()
    assert admin_client.post(change, _provider_form(clear_api_key="on")).status_code == 302
    assert not Provider.objects.get(pk=provider.pk).api_key
    assert _column(Provider, provider.pk, "api_key") == ""
    messages = " ".join(
        str(e.change_message) + e.get_change_message() + e.object_repr
        for e in LogEntry.objects.filter(object_id=str(provider.pk))
    )
    assert "new_api_key: replaced" in messages
    assert RAW_KEY not in messages and second not in messages and "WXYZ" not in messages


@pytest.mark.django_db
def test_the_admin_secret_status_covers_stored_set_missing_and_refused(admin_client, monkeypatch):
    changelist = reverse("admin:catalog_provider_changelist")
    Provider.objects.create(
        name="envkey", kind="openai", base_url="http://x.example", api_key_env="MY_API_KEY"
    )
    monkeypatch.delenv("MY_API_KEY", raising=False)
    assert "missing" in admin_client.get(changelist).content.decode()
    monkeypatch.setenv("MY_API_KEY", "sk-env-value-never-shown")
    html = admin_client.get(changelist).content.decode()
    assert "✔ set" in html and "sk-env-value-never-shown" not in html
    # A variable saved before the allow-list narrowed (an .update() skips validation).
    Provider.objects.filter(name="envkey").update(api_key_env="DJANGO_SECRET_KEY")
    assert "variable not allowed" in admin_client.get(changelist).content.decode()


@pytest.mark.django_db
def test_the_admin_refuses_a_variable_outside_the_allow_list(admin_client):
    response = admin_client.post(
        reverse("admin:catalog_provider_add"), _provider_form(api_key_env="DJANGO_SECRET_KEY")
    )
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert "api_key_env" in errors and "own configuration" in errors["api_key_env"][0]
    assert not Provider.objects.exists()


# --- configure_provider ---------------------------------------------------------------------


def _configure(*extra: str, stdin: str | None = None) -> str:
    out = io.StringIO()
    args = ["primary", "--kind", "openai", "--base-url", "http://127.0.0.1:9/v1"]
    args += ["--model", "sim-gpt", *extra]
    kwargs = {"stdin": io.StringIO(stdin)} if stdin is not None else {}
    call_command("configure_provider", *args, stdout=out, **kwargs)
    return out.getvalue()


@pytest.mark.django_db
def test_configure_provider_reads_the_key_from_stdin_and_keeps_it(capsys):
    printed = _configure("--api-key-stdin", stdin=RAW_KEY + "\n")
    provider = Provider.objects.get(name="primary")
    assert provider.api_key.reveal() == RAW_KEY and provider.api_key_env == ""
    assert "key stored …WXYZ" in printed and RAW_KEY not in printed
    assert RAW_KEY not in _column(Provider, provider.pk, "api_key")
    # Every earlier flag still works; without --api-key-stdin the stored key is kept.
    printed = _configure("--input-price", "1", "--output-price", "2", "--default")
    provider = Provider.objects.get(name="primary")
    assert provider.api_key.reveal() == RAW_KEY and provider.is_default
    assert "key stored …WXYZ" in printed
    with pytest.raises(CommandError, match="holds no key"):
        _configure("--api-key-stdin", stdin="\n")
    captured = capsys.readouterr()
    assert RAW_KEY not in captured.out + captured.err


def test_configure_provider_pipes_a_key_as_a_real_process(transactional_db):
    env = {**os.environ, "DATABASE_URL": _test_database_url(), "DJANGO_SECRET_KEY": "x"}
    env["AURA_ENCRYPTION_KEYS"] = Fernet.generate_key().decode()
    done = subprocess.run(
        [
            *(sys.executable, "manage.py", "configure_provider", "piped", "--kind", "openai"),
            *("--base-url", "http://127.0.0.1:9/v1", "--model", "m", "--api-key-stdin"),
        ],
        input=RAW_KEY + "\n",
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert RAW_KEY not in done.stdout + done.stderr and "…WXYZ" in done.stdout
    column = _column(Provider, Provider.objects.get(name="piped").pk, "api_key")
    fernet = Fernet(env["AURA_ENCRYPTION_KEYS"].encode())
    assert fernet.decrypt(column.encode()).decode() == RAW_KEY


# --- which variables --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "DJANGO_SECRET_KEY",
        "DATABASE_URL",
        "REDIS_URL",
        "EMAIL_URL",
        "AURA_ENCRYPTION_KEYS",
        "AURA_ADMIN_PASSWORD",
        "AURA_SOMETHING_API_KEY",  # matches *_API_KEY, but AURA_* is ours
        "LOG_LEVEL",  # read by settings.py: recorded there
        "TELEMETRY_RETENTION_DAYS",
        "django_secret_key",
    ],
)
def test_our_own_settings_are_never_a_key_variable_even_if_allowed(settings, name):
    settings.PROVIDER_SECRET_ENV = ["*"]  # an operator who allows everything
    assert env_refusal(name) is not None


def test_only_allowed_patterns_are_key_variables(settings):
    assert env_refusal("OPENAI_API_KEY") is None
    assert "not an allowed" in env_refusal("HOME")
    assert "not an environment variable" in env_refusal("A B")
    settings.PROVIDER_SECRET_ENV = ["*_API_KEY", "VENDOR_*"]
    assert env_refusal("VENDOR_TOKEN") is None and env_refusal("HOME") is not None


@pytest.mark.django_db
def test_a_refused_variable_is_an_error_at_save_naming_the_field():
    with pytest.raises(ValidationError) as raised:
        provider_configure(
            name="p", kind="openai", base_url="http://x.example", api_key_env="DATABASE_URL",
            model="m",
        )  # fmt: skip
    assert "api_key_env" in raised.value.message_dict
    with pytest.raises(CommandError, match=r"--api-key-env: .*own configuration"):
        _configure("--api-key-env", "DJANGO_SECRET_KEY")
    provider = Provider(name="p", kind="openai", base_url="http://x.example")
    provider.api_key_env = "REDIS_URL"
    with pytest.raises(ValidationError) as raised:
        provider.full_clean()
    assert list(raised.value.message_dict) == ["api_key_env"]
    assert not Provider.objects.exists()


@pytest.mark.django_db(transaction=True)
async def test_a_refused_variable_is_refused_at_call_time_and_nothing_is_sent(
    asgi_client, fake_upstream, monkeypatch
):
    """Saved before the rule (an .update() skips validation): the call fails with
    `provider_secret_refused`, and the fake upstream receives no request at all."""
    monkeypatch.setenv("DJANGO_SECRET_KEY", "the-real-django-secret")
    await sync_to_async(provider_configure)(
        name="primary", kind="openai", base_url=fake_upstream.openai_base_url,
        api_key_env="OPENAI_API_KEY", model="sim-gpt", input_price=Decimal(1),
        output_price=Decimal(2), make_default=True,
    )  # fmt: skip
    await Provider.objects.filter(name="primary").aupdate(api_key_env="DJANGO_SECRET_KEY")
    response = await asgi_client.post(EXECUTE, json=_body())
    data = response.json()
    assert response.status_code == 502, data
    assert data["error_code"] == "provider_secret_refused"
    assert "api_key_env refused" in data["error_message"]
    assert "the-real-django-secret" not in response.text
    assert fake_upstream.request_count == 0


@pytest.mark.django_db(transaction=True)
async def test_narrowing_the_allow_list_refuses_at_the_next_call(
    asgi_client, fake_upstream, monkeypatch, settings
):
    monkeypatch.setenv("VENDOR_TOKEN", "sk-vendor-token")
    settings.PROVIDER_SECRET_ENV = ["VENDOR_*"]
    await sync_to_async(provider_configure)(
        name="primary", kind="openai", base_url=fake_upstream.openai_base_url,
        api_key_env="VENDOR_TOKEN", model="sim-gpt", make_default=True,
    )  # fmt: skip
    assert (await asgi_client.post(EXECUTE, json=_body())).status_code == 200
    assert fake_upstream.request_headers[-1]["authorization"] == "Bearer sk-vendor-token"
    settings.PROVIDER_SECRET_ENV = ["*_API_KEY"]
    response = await asgi_client.post(EXECUTE, json=_body("creds-2"))
    assert response.json()["error_code"] == "provider_secret_refused"
    assert fake_upstream.request_count == 1


# --- never in clear ---------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_database_dump_holds_the_tokens_never_the_secrets(fake_upstream, project):
    """PostgreSQL: `pg_dump` of the test database. SQLite: the database file's bytes
    (and its write-ahead log)."""
    # Secrets of this test's own: the migration test above writes one in clear on purpose
    # (the state before 0003), and SQLite's free pages may keep those bytes until VACUUM.
    raw_key, hook_secret = f"sk-dump-{uuid.uuid4().hex}", f"whsec-dump-{uuid.uuid4().hex}"
    provider = _stored_provider(fake_upstream, key=raw_key)
    AlertEndpoint.objects.create(project=project, url="https://h.example/x", secret=hook_secret)
    tokens = [
        _column(Provider, provider.pk, "api_key"),
        _column(AlertEndpoint, AlertEndpoint.objects.get().pk, "secret"),
    ]
    if connection.vendor == "postgresql":
        dump = subprocess.run(
            ["pg_dump", "--dbname", _test_database_url()],
            capture_output=True,
            timeout=120,
            check=True,
        ).stdout
    else:
        connection.close()
        name = str(connection.settings_dict["NAME"])
        files = [Path(name), Path(name + "-wal")]
        dump = b"".join(path.read_bytes() for path in files if path.exists())
    assert len(dump) > 10_000
    for secret in (raw_key, hook_secret):
        assert secret.encode() not in dump
    for token in tokens:
        assert token.encode() in dump


# --- a changed key reaches every worker ------------------------------------------------------


@pytest.mark.django_db(transaction=True)
async def test_a_changed_key_is_sent_at_the_next_call(asgi_client, fake_upstream):
    await sync_to_async(_stored_provider)(fake_upstream)
    assert (await asgi_client.post(EXECUTE, json=_body())).status_code == 200
    assert fake_upstream.request_headers[-1]["authorization"] == f"Bearer {RAW_KEY}"
    await sync_to_async(_stored_provider)(fake_upstream, key="sk-changed-key-9999")
    assert (await asgi_client.post(EXECUTE, json=_body("creds-2"))).status_code == 200
    assert fake_upstream.request_headers[-1]["authorization"] == "Bearer sk-changed-key-9999"


def test_another_worker_sends_a_changed_key_within_the_memo_time(
    live_server_factory, transactional_db, fake_upstream, api_key
):
    """A real server with its memo on (2 s): a key changed here is sent there within
    that (at once with Redis, which carries the version bump; by the TTL without)."""
    server = live_server_factory(1, AURA_CONFIG_CACHE_SECONDS="2")
    _stored_provider(fake_upstream)
    headers = {"Authorization": f"Bearer {api_key.raw_key}"}

    def call(n: int) -> str:
        response = httpx.post(
            server.url + EXECUTE, json=_body(f"live-{n}"), headers=headers, timeout=30
        )
        assert response.status_code == 200, response.text
        return fake_upstream.request_headers[-1]["authorization"]

    assert call(0) == f"Bearer {RAW_KEY}"
    _stored_provider(fake_upstream, key="sk-changed-key-8888")
    changed_at = time.monotonic()
    n = 1
    while call(n) != "Bearer sk-changed-key-8888":
        n += 1
        assert time.monotonic() - changed_at < 2 + 0.25 + 1.5, "old key still sent"
        time.sleep(0.1)


# --- .env reaches serve and qcluster ----------------------------------------------------------


DOTENV_VAR = "DOTENV_PROBE_API_KEY"
DOTENV_VALUE = "sk-from-dotenv-file-1234"


@pytest.fixture
def dotenv_file(tmp_path):
    assert DOTENV_VAR not in os.environ
    path = tmp_path / ".env"
    path.write_text(f"{DOTENV_VAR}={DOTENV_VALUE}\n")
    return path


def test_a_key_variable_in_dotenv_reaches_serve(
    live_server_factory, transactional_db, fake_upstream, api_key, dotenv_file
):
    server = live_server_factory(1, AURA_ENV_FILE=str(dotenv_file))
    provider_configure(
        name="primary", kind="openai", base_url=fake_upstream.openai_base_url,
        api_key_env=DOTENV_VAR, model="sim-gpt", make_default=True,
    )  # fmt: skip
    response = httpx.post(
        server.url + EXECUTE,
        json=_body(),
        headers={"Authorization": f"Bearer {api_key.raw_key}"},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    assert fake_upstream.request_headers[-1]["authorization"] == f"Bearer {DOTENV_VALUE}"


def test_a_key_variable_in_dotenv_reaches_qcluster(
    transactional_db, dotenv_file, tmp_path, settings
):
    """The same lookup (`env_secret`, what `provider_config` calls) run as a task by a
    real `manage.py qcluster` sees the .env value."""
    from django_q.tasks import async_task, result

    env = {
        **os.environ,
        "DATABASE_URL": _test_database_url(),
        "DJANGO_SECRET_KEY": settings.SECRET_KEY,  # tasks are signed with it
        "DJANGO_SETTINGS_MODULE": "aura_orchestrator.settings",
        "AURA_ENV_FILE": str(dotenv_file),
        "Q_SYNC": "false",
        "Q_WORKERS": "1",
        "LOG_LEVEL": "WARNING",
    }
    task_id = async_task("aura_orchestrator.catalog.secrets.env_secret", DOTENV_VAR, sync=False)
    cluster = subprocess.Popen(
        [sys.executable, "manage.py", "qcluster"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        # A file, not a pipe: an unread pipe fills up and blocks the cluster's logging.
        stderr=(tmp_path / "qcluster.log").open("wb"),
    )
    log = tmp_path / "qcluster.log"
    try:
        deadline = time.monotonic() + 120
        while (value := result(task_id)) is None:
            assert cluster.poll() is None, log.read_text()[-2000:]
            assert time.monotonic() < deadline, log.read_text()[-2000:]
            time.sleep(0.3)
        assert value == DOTENV_VALUE
    finally:
        cluster.send_signal(signal.SIGTERM)  # the main process only (ECOSYSTEM pitfall 4)
        try:
            cluster.wait(timeout=20)
        except subprocess.TimeoutExpired:
            cluster.kill()
            cluster.wait()
