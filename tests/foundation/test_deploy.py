"""Running behind a TLS-terminating proxy: the documented production environment
(deploy/aura.env) passes `check --deploy`, and a real `serve` believes the proxy's
forwarded headers from the addresses it was told, and from no other."""

import os
import re
import secrets
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from cryptography.fernet import Fernet
from django.contrib.auth import get_user_model

ROOT = Path(__file__).resolve().parents[2]
PRODUCTION_ENV = ROOT / "deploy" / "aura.env"
HOST = "aura.example.com"


def production_env(tmp_path: Path) -> dict[str, str]:
    """deploy/aura.env as a process would get it, with a real secret and a real Fernet
    key in place of the placeholders and a local SQLite file and no Redis in place of the
    example hosts (the checks never connect; the names in the file do not resolve here)."""
    values = {}
    for line in PRODUCTION_ENV.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, value = line.partition("=")
            values[name.strip()] = value.strip()
    return {
        "PATH": os.environ["PATH"],
        "DJANGO_SETTINGS_MODULE": "aura_orchestrator.settings",
        **values,
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
        "AURA_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'deploy.sqlite3'}",
        "REDIS_URL": "",
        "AURA_JOURNAL_DIR": str(tmp_path / "journal"),
    }


def check_deploy(env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_check_deploy_is_clean_with_the_documented_production_environment(tmp_path):
    done = check_deploy(production_env(tmp_path))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "System check identified no issues" in done.stdout


def test_check_deploy_names_each_missing_deployment_setting(tmp_path):
    """The same environment without the TLS settings: one warning for each."""
    env = production_env(tmp_path)
    for name in ("SECURE_SSL_REDIRECT", "SECURE_HSTS_SECONDS", "SECURE_COOKIES"):
        del env[name]
    done = check_deploy(env)
    assert done.returncode != 0
    found = set(re.findall(r"security\.W\d+", done.stdout + done.stderr))
    assert found == {"security.W004", "security.W008", "security.W012", "security.W016"}


def test_the_documented_secret_placeholder_does_not_pass(tmp_path):
    env = production_env(tmp_path)
    env["DJANGO_SECRET_KEY"] = "replace-with-50-random-characters"
    done = check_deploy(env)
    assert "security.W009" in done.stdout + done.stderr


def test_the_documented_encryption_key_placeholder_does_not_pass(tmp_path):
    """The file's placeholder is no Fernet key (an error); without any key, a warning."""
    env = production_env(tmp_path)
    env["AURA_ENCRYPTION_KEYS"] = "replace-with-a-fernet-key"
    assert "aura.E010" in (done := check_deploy(env)).stdout + done.stderr
    del env["AURA_ENCRYPTION_KEYS"]
    assert "aura.W010" in (done := check_deploy(env)).stdout + done.stderr


PROXIED = {
    "ALLOWED_HOSTS": f"{HOST},127.0.0.1",  # loopback: the fixture's health probe
    "CSRF_TRUSTED_ORIGINS": f"https://{HOST}",
    "SECURE_SSL_REDIRECT": "true",
    "SECURE_HSTS_SECONDS": "3600",
    "SECURE_COOKIES": "true",
}


def _login(server_url: str, *, forwarded: dict[str, str]) -> httpx.Response:
    """The admin login form as a browser behind the proxy sends it (Host, Origin and the
    CSRF cookie of https://aura.example.com)."""
    headers = {"Host": HOST, **forwarded}
    with httpx.Client(base_url=server_url, headers=headers, timeout=10) as client:
        form = client.get("/admin/login/")
        assert form.status_code == 200, form.status_code
        cookie = form.headers["set-cookie"]
        assert "Secure" in cookie
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form.text)
        assert token
        csrf_cookie = cookie.split(";")[0]
        return client.post(
            "/admin/login/?next=/admin/",
            data={
                "csrfmiddlewaretoken": token.group(1),
                "username": "ops",
                "password": "proxy-test-password-42",
            },
            # A Secure cookie: httpx keeps it off plain http, the browser sends it over TLS.
            headers={"Origin": f"https://{HOST}", "Cookie": csrf_cookie},
        )


@pytest.fixture
def operator(transactional_db):
    get_user_model().objects.create_superuser(
        username="ops", email="", password="proxy-test-password-42"
    )


def test_behind_the_proxy_https_is_believed_and_the_admin_login_works(
    live_server_factory, operator
):
    """FORWARDED_ALLOW_IPS=127.0.0.1 (the proxy on this machine): X-Forwarded-Proto
    https makes the request secure (no redirect, HSTS, Secure cookies, a CSP) and the
    admin login succeeds; without the header the same request is sent to https."""
    server = live_server_factory(1, FORWARDED_ALLOW_IPS="127.0.0.1", **PROXIED)
    plain = httpx.get(server.url + "/admin/login/", headers={"Host": HOST})
    assert plain.status_code == 301
    assert plain.headers["location"] == f"https://{HOST}/admin/login/"

    proxied = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.9"}
    page = httpx.get(server.url + "/admin/login/", headers={"Host": HOST, **proxied})
    assert page.status_code == 200
    assert page.headers["strict-transport-security"] == "max-age=3600"
    assert "script-src 'self'" in page.headers["content-security-policy"]
    logged_in = _login(server.url, forwarded=proxied)
    assert logged_in.status_code == 302, logged_in.text[:500]
    assert logged_in.headers["location"] == "/admin/"
    assert "sessionid=" in logged_in.headers["set-cookie"]
    # Health checks on loopback stay on plain HTTP.
    assert httpx.get(server.url + "/healthz").status_code == 200


def test_forwarded_headers_from_other_addresses_are_not_believed(live_server_factory):
    """FORWARDED_ALLOW_IPS names another machine: a client on loopback claiming https is
    still redirected. TRUST_X_FORWARDED_PROTO makes Django itself read the header."""
    claim = {"Host": HOST, "X-Forwarded-Proto": "https"}
    elsewhere = live_server_factory(1, FORWARDED_ALLOW_IPS="192.0.2.1", **PROXIED)
    assert httpx.get(elsewhere.url + "/admin/login/", headers=claim).status_code == 301
    trusting = live_server_factory(
        1, FORWARDED_ALLOW_IPS="192.0.2.1", TRUST_X_FORWARDED_PROTO="true", **PROXIED
    )
    assert httpx.get(trusting.url + "/admin/login/", headers=claim).status_code == 200


def test_the_json_api_carries_no_csp_and_the_fast_front_stays_on(client, db):
    """CSP is for documents: the JSON API is excluded, as the fast front (which adds no
    such header) requires; the pages have it."""
    from aura_orchestrator.fastpath import guard

    assert guard.differences() == []
    assert "content-security-policy" not in client.get("/api/v1/presets/").headers
    assert "default-src 'self'" in client.get("/api/docs/")["Content-Security-Policy"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_listens_on_host_and_port_from_the_environment(tmp_path):
    """`manage.py serve` without options: HOST and PORT, as scripts/start.sh and the
    systemd unit give them."""
    port = _free_port()
    env = {**production_env(tmp_path), "HOST": "127.0.0.1", "PORT": str(port), "WORKERS": "1"}
    env.update(ALLOWED_HOSTS="127.0.0.1", LOG_LEVEL="WARNING")
    process = subprocess.Popen(
        [sys.executable, "manage.py", "serve"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, process.stdout.read() if process.stdout else ""
            try:
                reply = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline, "serve did not start in 30 s"
                time.sleep(0.2)
        assert reply.status_code == 200
    finally:
        process.terminate()
        process.wait(timeout=15)


# Where the code reads the environment: settings.py (django-environ and _env_url), the
# commands and modules that read os.environ by name, and the scripts' ${NAME:-…}.
READS = [
    (r"""env\.\w+\(\s*["']([A-Z][A-Z0-9_]+)["']""", "aura_orchestrator/settings.py"),
    (r"""_env_url\(["']([A-Z][A-Z0-9_]+)["']""", "aura_orchestrator/settings.py"),
    (r"""os\.environ(?:\.get|\.setdefault)?[\[(]\s*["']([A-Z][A-Z0-9_]+)["']""", "**/*.py"),
    (r"\$\{([A-Z][A-Z0-9_]+)[:}-]", "scripts/*.sh"),
]
DOCUMENTED_ELSEWHERE = {"AURA_SERVER_GC", "AURA_WEB_WORKER"}  # set by serve, named in the doc


def test_every_environment_variable_the_code_reads_is_in_the_deployment_table():
    """docs/DEPLOYMENT.md's table names every variable read by settings.py, the commands
    and modules (bench and tests excluded) and the scripts."""
    table = {
        m.group(1)
        for m in re.finditer(
            r"^\| `([A-Z][A-Z0-9_]+)`", (ROOT / "docs/DEPLOYMENT.md").read_text(), re.M
        )
    }
    read: dict[str, str] = {}
    for pattern, files in READS:
        for path in ROOT.glob(files):
            relative = path.relative_to(ROOT).as_posix()
            if relative.startswith((".venv/", "bench/", "tests/", "staticfiles/")):
                continue
            for name in re.findall(pattern, path.read_text()):
                read.setdefault(name, relative)
    assert {"DJANGO_SECRET_KEY", "PORT", "AURA_ADMIN_PASSWORD", "Q_WORKERS"} <= read.keys()
    missing = {n: f for n, f in read.items() if n not in table | DOCUMENTED_ELSEWHERE}
    assert missing == {}, missing


@pytest.mark.django_db
def test_bootstrap_creates_the_admin_it_was_told_and_a_first_key_once(settings):
    """AURA_ADMIN_USER / AURA_ADMIN_PASSWORD name the first superuser; a second run
    creates nothing."""
    from io import StringIO

    from django.core.management import call_command

    from aura_orchestrator.tenancy.models import ApiKey

    settings.AURA = {
        **settings.AURA,
        "BOOTSTRAP": {"ADMIN_USER": "ops", "ADMIN_PASSWORD": "bootstrap-password-42"},
    }
    out = StringIO()
    call_command("bootstrap", stdout=out)
    user = get_user_model().objects.get(is_superuser=True)
    assert user.username == "ops" and user.check_password("bootstrap-password-42")
    key = re.search(
        r"First API key \(shown once, only its hash is kept\): (aura_\S+)", out.getvalue()
    )
    assert key and ApiKey.objects.count() == 1
    again = StringIO()
    call_command("bootstrap", stdout=again)
    assert "already present" in again.getvalue()
    assert get_user_model().objects.count() == 1 and ApiKey.objects.count() == 1
