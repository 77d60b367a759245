"""One command for the whole benchmark (issue 7): see bench/README.md.

    .venv/bin/python bench/run.py [--quick] [--with-litellm] [--repeats N]

Starts the fast fake upstream, migrates and seeds a scratch PostgreSQL database
(`aura_bench`), starts the orchestrator (`manage.py serve`), optionally LiteLLM proxy from
bench/.venv-litellm, and measures every scenario against every target side by side in each
repeat. Prints a Markdown table of medians and writes it to bench/results/latest.md (raw
numbers to bench/results/latest.json).
"""

import argparse
import contextlib
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from load import rss_mb  # bench/load.py: this folder is on sys.path when run as a script

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
PY = sys.executable
DB_URL = os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/aura_bench")
LITELLM = BENCH / ".venv-litellm" / "bin" / "litellm"
LITELLM_KEY = "sk-bench-" + os.urandom(16).hex()  # LiteLLM refuses to start without one
SESSIONS = 600  # one budget session per load connection (500 in flight at most)
# Hard caps no benchmark can reach, so nothing is refused but every reservation is checked.
HARD_CAPS = {"max_tokens_per_session": 10**13, "max_cost_per_session": "1000000000"}
CPU_SERVER, CPU_CLIENT = 0, 1  # the upstream and the load generator share the other core


def env() -> dict:
    return {
        **os.environ,
        "DATABASE_URL": DB_URL,
        "DJANGO_SECRET_KEY": "bench-only-secret",
        "DEBUG": "false",
        "LOG_LEVEL": "WARNING",
        "BENCH_UPSTREAM_API_KEY": "sk-bench",
        "PYTHONUNBUFFERED": "1",
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float = 60.0, proc: "Proc | None" = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.popen.poll() is not None:
            raise RuntimeError(f"{proc.name} exited; see {proc.log.name}")
        try:
            urllib.request.urlopen(url, timeout=2).read()
            return
        except Exception:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not come up in {timeout} s")


def descendants(pid: int) -> list[int]:
    """The process and all its descendants (uvicorn's supervisor and workers)."""
    pids, todo = [], [pid]
    while todo:
        p = todo.pop()
        pids.append(p)
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    todo += [int(c) for c in f.read().split()]
        except FileNotFoundError:
            pass
    return pids


def pinned(cpu: int | None):
    def pin() -> None:
        os.setsid()
        if cpu is not None and hasattr(os, "sched_setaffinity"):
            with contextlib.suppress(OSError):
                os.sched_setaffinity(0, {cpu})

    return pin


class Proc:
    def __init__(self, name: str, argv: list[str], *, cpu: int | None, log: Path, **kw) -> None:
        self.name = name
        self.log = open(log, "w")  # noqa: SIM115  (closed by stop())
        self.popen = subprocess.Popen(
            argv, stdout=self.log, stderr=subprocess.STDOUT, preexec_fn=pinned(cpu), **kw
        )

    @property
    def pids(self) -> list[int]:
        return descendants(self.popen.pid)

    def worker_pids(self) -> list[int]:
        """The processes that serve requests: uvicorn's children if it has any."""
        pids = self.pids
        serving = [p for p in pids[1:] if rss_mb(p) > 40]  # not multiprocessing helpers
        return serving or pids[:1]

    def stop(self) -> None:
        if self.popen.poll() is None:
            os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait()
        self.log.close()


# --- Setup ----------------------------------------------------------------------------------


def ensure_database(url: str = DB_URL, root: Path = ROOT) -> None:
    """Create the database if needed and migrate it with the code (and migrations) in root."""
    import psycopg

    base, _, name = url.rpartition("/")
    with psycopg.connect(base + "/postgres", autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')
    subprocess.run(
        [PY, "manage.py", "migrate", "--noinput", "-v", "0"],
        cwd=root,
        env=env() | {"DATABASE_URL": url},
        check=True,
    )


def seed(upstream_port: int, url: str = DB_URL, root: Path = ROOT) -> dict:
    """Runs in a child process with Django set up: providers, a key, hard-capped sessions.

    The child imports the code in root (its cwd, first on sys.path); it reports which.
    """
    out = subprocess.run(
        [PY, str(BENCH / "run.py"), "--seed", str(upstream_port)],
        cwd=root,
        env=env() | {"DATABASE_URL": url},
        check=True,
        capture_output=True,
        text=True,
    )
    seeded = json.loads(out.stdout.strip().splitlines()[-1])
    if not Path(seeded["code"]).is_relative_to(root):
        raise RuntimeError(f"seeding {url} imported {seeded['code']}, not the code in {root}")
    vacuum(url)
    return seeded


def vacuum(url: str) -> None:
    """VACUUM (ANALYZE) the database: this machine's PostgreSQL runs without autovacuum
    (conf.d/90-ci.conf), and earlier runs' dead rows (448,000 of the sessions' after a
    few) slowed every target by ~30 %, unlike a production server."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM (ANALYZE)")


def _seed(upstream_port: int) -> None:
    sys.path.insert(0, os.getcwd())  # ROOT, or a --compare-rev worktree
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "aura_orchestrator.settings")
    import django

    django.setup()
    from decimal import Decimal

    from aura_orchestrator.catalog.models import Provider
    from aura_orchestrator.catalog.services import provider_configure
    from aura_orchestrator.tenancy.services import api_key_create, project_get_or_create
    from budgets.models import LlmSession
    from budgets.services import Caps, session_ensure

    base = f"http://127.0.0.1:{upstream_port}"
    Provider.objects.exclude(name__in=["bench", "bench-slow"]).update(enabled=False)
    for name, url, model, default in [
        ("bench", f"{base}/v1", "bench-model", True),
        ("bench-slow", f"{base}/lat/1000/v1", "bench-model-slow", False),
    ]:
        provider_configure(
            name=name,
            kind="openai",
            base_url=url,
            api_key_env="BENCH_UPSTREAM_API_KEY",
            model=model,
            input_price=Decimal("1"),
            output_price=Decimal("2"),
            make_default=default,
        )
    caps = Caps.inline(
        max_tokens_per_session=HARD_CAPS["max_tokens_per_session"],
        max_cost_per_session=Decimal(HARD_CAPS["max_cost_per_session"]),
        enforce_hard_limits=True,
    )
    keys = {}
    for name in ("bench", "bench-spend", "bench-limits"):
        project = project_get_or_create(name=name)
        created = api_key_create(name=f"{name}-{int(time.time())}", project=project)
        keys[name] = created.raw_key
        LlmSession.objects.filter(project=project).delete()
        for i in range(SESSIONS):
            session_ensure(project_id=project.pk, session_id=f"bench-{i}", caps=caps)
        if name == "bench-spend":
            _spend_budgets(project, created.api_key)
        if name == "bench-limits":
            _rate_limits(project, created.api_key)
    import aura_orchestrator

    print(
        json.dumps(
            {
                "api_key": keys["bench"],
                "spend_api_key": keys["bench-spend"],
                "limits_api_key": keys["bench-limits"],
                "code": aura_orchestrator.__file__,
            }
        )
    )


def _spend_budgets(project, api_key) -> None:
    """`--spend-budgets`: a month budget on the project and a day budget on the key, hard,
    caps no benchmark reaches: every call holds and settles three levels (with its
    session's). Absent from revisions before spend budgets (the seed then skips them)."""
    from decimal import Decimal

    try:
        from budgets.models import SpendBudget
    except ImportError:
        return
    SpendBudget.objects.filter(project=project).delete()
    SpendBudget.objects.create(
        project=project, period="month", max_tokens=10**13, max_cost=Decimal("10000000")
    )
    SpendBudget.objects.create(
        project=project,
        scope="api_key",
        api_key=api_key,
        period="day",
        max_tokens=10**13,
        max_cost=Decimal("10000000"),
    )


def _rate_limits(project, api_key) -> None:
    """`--rate-limits`: requests and tokens per minute and calls in flight on the key, at
    rates no benchmark reaches: every call is admitted on three windows and ended on them
    (Redis when the bench runs with REDIS_URL, else the database). Absent from revisions
    before rate limits (the seed then skips them)."""
    try:
        from budgets.models import RateLimit
    except ImportError:
        return
    RateLimit.objects.filter(project=project).delete()
    RateLimit.objects.create(
        project=project,
        scope="api_key",
        api_key=api_key,
        requests_per_minute=10**9,
        tokens_per_minute=10**15,
        max_in_flight=10**6,
    )


# --- Targets and scenarios ------------------------------------------------------------------

PROMPT = "Summarise the plot of a short film about a lighthouse keeper in two sentences."


def chat_body(model: str, *, stream: bool = False) -> dict:
    body = {"model": model, "messages": [{"role": "user", "content": PROMPT}], "max_tokens": 200}
    if stream:
        body |= {"stream": True, "stream_options": {"include_usage": True}}
    return body


class Target:
    """Where requests go and how a scenario is expressed for it (None: not applicable)."""

    def __init__(self, name: str, port: int, kind: str, key: str = "", proc: Proc | None = None):
        self.name, self.port, self.kind, self.key, self.proc = name, port, kind, key, proc

    def spec(self, scenario: str) -> dict | None:
        slow = scenario == "c"
        auth = {"Authorization": f"Bearer {self.key}"} if self.key else {}
        if self.kind == "direct":
            if scenario == "d":
                return None
            path = "/lat/1000/v1/chat/completions" if slow else "/v1/chat/completions"
            return {"path": path, "body": chat_body("bench-model", stream=scenario == "e")}
        if self.kind == "litellm":
            if scenario == "d":
                return None
            model = "bench-model-slow" if slow else "bench-model"
            return {
                "path": "/v1/chat/completions",
                "body": chat_body(model, stream=scenario == "e"),
                "headers": {"Authorization": f"Bearer {LITELLM_KEY}"},
            }
        if self.kind == "gateway":
            model = "bench-model-slow" if slow else "bench-model"
            headers = {**auth, "X-Aura-Session-Id": "bench-{i}"}
            if scenario == "d":
                headers["X-Aura-Enable-Cache"] = "true"
            return {
                "path": "/v1/chat/completions",
                "body": chat_body(model, stream=scenario == "e"),
                "headers": headers,
            }
        # execute
        if scenario == "e":
            return None
        body = {
            "session_id": "bench-{i}",
            "operation_type": "completion",
            "prompt": PROMPT,
            "enable_cache": scenario == "d",
            "custom_preset": {"max_tokens": 200},
        }
        if slow:
            body["model"] = "bench-model-slow"
        return {"path": "/api/v1/operations/execute", "body": body, "headers": auth}


SCENARIOS = {
    # name: (concurrency, requests full/quick, duration cap s, warmup per connection)
    "a": (1, (1500, 400), 20.0, 20),
    "b": (50, (4000, 1500), 20.0, 4),
    "c": (500, (2500, 1500), 15.0, 1),
    "d": (1, (1500, 400), 20.0, 20),
    "e": (1, (1000, 300), 20.0, 20),
}


def load(target: Target, scenario: str, quick: bool, concurrency: int | None = None) -> dict | None:
    spec = target.spec(scenario)
    if spec is None:
        return None
    conc, counts, duration, warmup = SCENARIOS[scenario]
    conc = concurrency or conc
    pids = target.proc.pids if target.proc else []
    spec |= {
        "port": target.port,
        "concurrency": conc,
        "requests": counts[1] if quick else counts[0],
        "duration": duration,
        "warmup": warmup,
        "stream": scenario == "e",
        "pids": pids,
    }
    out = subprocess.run(
        [PY, str(BENCH / "load.py"), "--cpu", str(CPU_CLIENT), "--spec", json.dumps(spec)],
        capture_output=True,
        text=True,
        timeout=duration + 120,
    )
    if out.returncode != 0:
        raise RuntimeError(f"load.py failed: {out.stderr[-2000:]}")
    result = json.loads(out.stdout)
    if result["errors"] or not result["ok"]:
        print(f"  ! {target.name}/{scenario}: {result['statuses']} errors={result['errors']}")
    return result


# `--baseline`: the same code with the fast front and the async store off, i.e. every
# request through Django's ASGI stack, DRF and the ORM in db()'s threads (the hot path as
# it was before them), measured side by side in the same run.
BASELINE_ENV = {"AURA_FAST_PATH": "0", "AURA_ASYNC_STORE": "0"}


def worktree(rev: str) -> tuple[Path, str]:
    """`--compare-rev`: a git worktree of rev under /tmp (made once, reused) and the name of
    its own database (the schemas differ: it is migrated from the worktree's migrations)."""

    def git(cwd: Path, *argv: str) -> str:
        out = subprocess.run(["git", "-C", str(cwd), *argv], stdout=subprocess.PIPE, text=True)
        return out.stdout.strip() if out.returncode == 0 else sys.exit(f"git {argv} failed")

    sha = git(ROOT, "rev-parse", "--short", f"{rev}^{{commit}}")
    path = Path(f"/tmp/aura-bench-{sha}")
    if not path.exists():
        git(ROOT, "worktree", "add", "--detach", str(path), sha)
    if git(path, "rev-parse", "--short", "HEAD") != sha:
        sys.exit(f"{path} is not at {sha}: git worktree remove {path}, and run again")
    return path, f"{DB_URL}_{sha}"


def start_upstream() -> tuple[Proc, int]:
    """The fake upstream, on the load generator's core."""
    port = free_port()
    proc = Proc(
        "upstream",
        [PY, str(BENCH / "upstream.py"), "--port", str(port)],
        cpu=CPU_CLIENT,
        log=BENCH / "results" / "upstream.log",
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz", proc=proc)
    except Exception:
        proc.stop()
        raise
    return proc, port


def start_orchestrator(
    workers: int, cpu: int | None, log_name: str, extra_env: dict | None = None, root: Path = ROOT
) -> tuple[Proc, int]:
    """`manage.py serve` run from root: its directory comes first on sys.path, before the
    editable install's finder, so a --compare-rev worktree serves its own code."""
    port = free_port()
    proc = Proc(
        "orchestrator",
        [PY, "manage.py", "serve", "--port", str(port), "--workers", str(workers)],
        cpu=cpu,
        log=BENCH / "results" / log_name,
        cwd=root,
        env=env() | (extra_env or {}),
    )
    wait_http(f"http://127.0.0.1:{port}/healthz", proc=proc)
    return proc, port


def start_collector() -> tuple[Proc, dict]:
    """`--otel`: the stub OTLP/HTTP collector (aura_orchestrator/simulator/collector.py),
    on the load generator's core, and the environment that makes a server export to it."""
    port = free_port()
    proc = Proc(
        "collector",
        [PY, "-m", "aura_orchestrator.simulator.collector", "--port", str(port), "--quiet"],
        cpu=CPU_CLIENT,
        log=BENCH / "results" / "collector.log",
        cwd=ROOT,
    )
    deadline = time.monotonic() + 30
    while "OTLP collector" not in (BENCH / "results" / "collector.log").read_text():
        if proc.popen.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("the OTLP collector stub did not start")
        time.sleep(0.1)
    return proc, {"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}"}


def start_litellm(upstream_port: int) -> tuple[Proc, int] | None:
    if not LITELLM.exists():
        print("LiteLLM is not installed in bench/.venv-litellm: skipped (see bench/README.md)")
        return None
    base = f"http://127.0.0.1:{upstream_port}"
    config = BENCH / "results" / "litellm.yaml"
    config.write_text(
        "model_list:\n"
        f"  - model_name: bench-model\n    litellm_params:\n      model: openai/bench-model\n"
        f"      api_base: {base}/v1\n      api_key: sk-bench\n"
        f"  - model_name: bench-model-slow\n    litellm_params:\n"
        f"      model: openai/bench-model-slow\n      api_base: {base}/lat/1000/v1\n"
        f"      api_key: sk-bench\n"
        "litellm_settings:\n  telemetry: false\n"
    )
    port = free_port()
    proc = Proc(
        "litellm",
        [str(LITELLM), "--config", str(config), "--port", str(port), "--num_workers", "1"],
        cpu=CPU_SERVER,
        log=BENCH / "results" / "litellm.log",
        cwd=BENCH / "results",
        env={
            **os.environ,
            "LITELLM_LOG": "ERROR",
            "LITELLM_TELEMETRY": "False",
            "LITELLM_MASTER_KEY": LITELLM_KEY,
        },
    )
    wait_http(f"http://127.0.0.1:{port}/health/liveliness", timeout=180, proc=proc)
    return proc, port


def gateway_present(port: int, key: str) -> bool:
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/v1/chat/completions",
        data=json.dumps(chat_body("bench-model")).encode(),
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    )
    try:
        return urllib.request.urlopen(req, timeout=10).status == 200
    except Exception:
        return False


# --- Report ---------------------------------------------------------------------------------


def med(values: list[float | None]) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def fmt(value: float | None, digits: int = 2, unit: str = "") -> str:
    return "—" if value is None else f"{value:.{digits}f}{unit}"


def report(raw: dict, names: list[str], notes: list[str]) -> str:
    def m(target: str, scenario: str, key: str) -> float | None:
        return med([r[key] for r in raw["runs"].get(f"{target}/{scenario}", []) if r])

    head = "| scenario | metric | " + " | ".join(names) + " | target |"
    lines = [head, "|" + " --- |" * (len(names) + 3)]

    def row(scenario: str, metric: str, cells: list[str], target: str = "") -> None:
        lines.append(f"| {scenario} | {metric} | " + " | ".join(cells) + f" | {target} |")

    def added(scenario: str, key: str) -> list[str]:
        base = m("direct", scenario, key)
        return [fmt(None if n == "direct" else _sub(m(n, scenario, key), base)) for n in names]

    def cells(scenario: str, key: str, digits: int = 2) -> list[str]:
        return [fmt(m(n, scenario, key), digits) for n in names]

    row("a", "p50 ms (c=1, 0 ms upstream)", cells("a", "p50_ms"))
    row("a", "added p50 ms vs direct", added("a", "p50_ms"), "≤ 2.5")
    row("a", "added p95 ms vs direct", added("a", "p95_ms"))
    row("a", "server CPU ms/request", cells("a", "server_cpu_ms_per_req"), "≤ 2.5")
    if any(n.endswith("+otel") for n in names):  # --otel: export on beside off

        def otel_ratio(key: str) -> list[str]:
            return [
                fmt(_div(m(n, "a", key), m(n.removesuffix("+otel"), "a", key)), 3, "x")
                if n.endswith("+otel")
                else ""
                for n in names
            ]

        row("a", "p50 with export / without", otel_ratio("p50_ms"), "≤ 1.05x")
        row("a", "server CPU with export / without", otel_ratio("server_cpu_ms_per_req"))
    row("b", "requests/s (c=50)", cells("b", "rps", 0), "≥ 10x LiteLLM")
    lit = m("litellm", "b", "rps") if "litellm" in names else None
    if lit:
        row("b", "x LiteLLM", [fmt(_div(m(n, "b", "rps"), lit), 1, "x") for n in names], "≥ 10x")
    row("b", "server CPU ms/request", [fmt(m(n, "b", "server_cpu_ms_per_req")) for n in names])
    row("b", "PostgreSQL CPU ms/request", [fmt(m(n, "b", "db_cpu_ms_per_req")) for n in names])
    row("c", "requests/s (500 in flight, 1 s upstream)", [fmt(m(n, "c", "rps"), 0) for n in names])
    row("c", "server CPU ms/request", [fmt(m(n, "c", "server_cpu_ms_per_req")) for n in names])
    row(
        "c",
        "x direct",
        [fmt(_div(m(n, "c", "rps"), m("direct", "c", "rps")), 2, "x") for n in names],
        "≥ 0.9x",
    )
    row("d", "cache-hit p50 ms (c=1)", [fmt(m(n, "d", "p50_ms")) for n in names], "≤ 1.5")
    row("e", "stream TTFB p50 ms (c=1)", [fmt(m(n, "e", "ttfb_p50_ms")) for n in names])
    row("e", "added TTFB ms vs direct", added("e", "ttfb_p50_ms"), "≤ 2")
    for workers, runs in sorted(raw.get("workers", {}).items()):
        rps = med([r["rps"] for r in runs])
        cpu = med([r["server_cpu_ms_per_req"] for r in runs])
        text = f"{fmt(rps, 0)} rps, {fmt(cpu)} ms CPU/req"
        row(
            "f",
            f"{workers} worker(s), c=50, unpinned",
            [text if n == "execute" else "" for n in names],
            "grows to 2 cores",
        )
    for n in names:
        mem = raw["rss"].get(n)
        if mem:
            per_repeat = ", ".join(fmt(max(r), 0) for r in mem)
            row(
                "h",
                f"RSS MB per worker after each repeat ({n})",
                [per_repeat if x == n else "" for x in names],
                "≤ 150, no growth",
            )
    for note in notes:
        lines.append("")
        lines.append(f"- {note}")
    return "\n".join(lines) + "\n"


def scenario_g(args, targets: list[Target], raw: dict) -> str:
    """Fill the telemetry table, time statistics and dashboards, re-measure /execute."""
    out = BENCH / "results" / "g-statistics.txt"
    with open(out, "w") as log:
        for script, extra in (
            ("gen_telemetry.py", ["--rows", str(args.telemetry_rows)]),
            ("dashboard_pages.py", []),
        ):
            log.write(f"$ bench/{script} {' '.join(extra)}\n")
            log.flush()
            subprocess.run(
                [PY, str(BENCH / script), *extra],
                cwd=ROOT,
                env=env(),
                stdout=log,
                stderr=subprocess.STDOUT,
                check=False,
                timeout=3600,
            )
    execute = next(t for t in targets if t.name == "execute")
    for scenario in "ab":
        for _ in range(args.repeats or (1 if args.quick else 3)):
            result = load(execute, scenario, args.quick)
            raw["runs"].setdefault(f"execute@rows/{scenario}", []).append(result)
            print(f"[g] {scenario} {summary('execute@rows', result)}")
    m = {k: med([r["p50_ms"] for r in raw["runs"][f"{k}/a"]]) for k in ("execute", "execute@rows")}
    rps = {k: med([r["rps"] for r in raw["runs"][f"{k}/b"]]) for k in ("execute", "execute@rows")}
    return (
        f"(g) with {args.telemetry_rows:,} more telemetry rows: /execute p50 (a) "
        f"{fmt(m['execute'])} → {fmt(m['execute@rows'])} ms, throughput (b) "
        f"{fmt(rps['execute'], 0)} → {fmt(rps['execute@rows'], 0)} rps; statistics and "
        f"dashboard timings in bench/results/g-statistics.txt:\n\n```\n"
        + _excerpt(out.read_text())
        + "\n```"
    )


def _excerpt(text: str) -> str:
    """The timing lines of the (g) scripts: progress, tracebacks and warnings left out."""
    noise = ("inserted ", "Traceback", "File ", "^", "response = ", "host = ", "raise ")
    keep = [
        line
        for line in text.splitlines()
        if not line.strip().startswith(noise) and " ERROR " not in line and "Warning" not in line
    ]
    return "\n".join(keep)[-4000:]


def summary(name: str, r: dict) -> str:
    return (
        f"{name:8s} {r['rps']:8.1f} rps p50 {r['p50_ms']:8.3f} ms ttfb {r['ttfb_p50_ms']} "
        f"cpu/req {r['server_cpu_ms_per_req']} ms client cpu/req {r['client_cpu_ms_per_req']} ms "
        f"rss {r['server_rss_mb']}"
    )


def _sub(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def _div(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else a / b


def profile(name: str, quick: bool, scenario: str = "a") -> None:
    """py-spy (needs ptrace: root or CAP_SYS_PTRACE) on the worker under one scenario."""
    py_spy = Path(PY).parent / "py-spy"
    out = BENCH / "results"
    procs: list[Proc] = []
    try:
        upstream, up_port = start_upstream()
        procs.append(upstream)
        ensure_database()
        key = seed(up_port)["api_key"]
        orch, orch_port = start_orchestrator(1, CPU_SERVER, "orchestrator.log")
        procs.append(orch)
        target = Target("execute", orch_port, "execute", key, orch)
        load(target, scenario, True)  # warm up
        for fmt_, suffix in (("raw", "txt"), ("speedscope", "json")):
            spy = subprocess.Popen(
                [
                    *(str(py_spy), "record", "-p", str(orch.popen.pid), "-r", "500"),
                    *("-f", fmt_, "-o", str(out / f"profile-{name}.{suffix}"), "--nonblocking"),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            time.sleep(1)
            result = load(target, scenario, quick)
            spy.send_signal(signal.SIGINT)
            spy.wait(60)
            cpu = result["server_cpu_ms_per_req"]
            print(f"{fmt_}: {result['p50_ms']} ms p50, {cpu} ms CPU/req")
        print(top_frames(out / f"profile-{name}.txt"))
    finally:
        for proc in reversed(procs):
            proc.stop()


def top_frames(collapsed: Path, n: int = 25) -> str:
    """Inclusive share of samples per function (a frame counted once per stack)."""
    total, inclusive, own = 0, {}, {}
    for line in collapsed.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        count = int(count)
        total += count
        frames = stack.split(";")
        for frame in set(frames):
            inclusive[frame] = inclusive.get(frame, 0) + count
        own[frames[-1]] = own.get(frames[-1], 0) + count
    lines = [f"{total} samples; inclusive % | self % | frame"]
    for frame, count in sorted(inclusive.items(), key=lambda kv: -kv[1])[:n]:
        share, self_share = 100 * count / total, 100 * own.get(frame, 0) / total
        lines.append(f"{share:5.1f} | {self_share:5.1f} | {frame}")
    lines.append("top self:")
    for frame, count in sorted(own.items(), key=lambda kv: -kv[1])[:n]:
        lines.append(f"{100 * count / total:5.1f} | {frame}")
    return "\n".join(lines)


# --- Main -----------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer requests, one repeat")
    parser.add_argument("--with-litellm", action="store_true")
    parser.add_argument("--repeats", type=int)
    parser.add_argument("--workers", default="1", help="orchestrator workers for (a)-(e)")
    parser.add_argument("--scaling", default="1,2,4", help="worker counts for (f); '' to skip")
    parser.add_argument("--scenarios", default="abcde")
    parser.add_argument(
        "--baseline",
        action="store_true",
        help="also measure a second orchestrator with the fast front and the async store "
        "off (Django + DRF + ORM: targets execute-django, gateway-django)",
    )
    parser.add_argument(
        "--compare-rev",
        metavar="REV",
        help="also measure the orchestrator of git revision REV, served from a worktree "
        "(/tmp/aura-bench-SHA) against its own database (BENCH_DATABASE_URL + _SHA): "
        "targets 'execute (REV)', 'gateway (REV)'",
    )
    parser.add_argument(
        "--profile",
        metavar="NAME",
        help="only profile: py-spy records the worker under the first of --scenarios on "
        "/execute and writes bench/results/profile-NAME.{txt,json}",
    )
    parser.add_argument(
        "--telemetry-rows",
        type=int,
        default=0,
        help="(g): add this many generated telemetry rows (bench/gen_telemetry.py), time "
        "statistics and dashboard pages, and measure (a) and (b) on /execute again",
    )
    parser.add_argument(
        "--spend-budgets",
        action="store_true",
        help="also measure execute+spend and gateway+spend: the same server, a project with "
        "a project and a key spend budget on",
    )
    parser.add_argument(
        "--otel",
        action="store_true",
        help="also measure execute+otel and gateway+otel: a second orchestrator exporting "
        "OpenTelemetry spans to a stub OTLP/HTTP collector (on the load generator's core)",
    )
    parser.add_argument(
        "--rate-limits",
        action="store_true",
        help="also measure execute+limits and gateway+limits: the same server, a key with "
        "requests and tokens per minute and calls in flight limited (never reached)",
    )
    parser.add_argument("--out", default="latest", help="bench/results/OUT.{md,json}")
    parser.add_argument("--seed", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.seed:
        return _seed(args.seed)
    if args.profile:
        return profile(args.profile, args.quick, args.scenarios[0])
    repeats = args.repeats or (1 if args.quick else 3)
    (BENCH / "results").mkdir(exist_ok=True)
    procs: list[Proc] = []
    notes: list[str] = []
    raw: dict = {"runs": {}, "workers": {}, "rss": {}}
    try:
        upstream, up_port = start_upstream()
        procs.append(upstream)
        print("migrating and seeding", DB_URL)
        ensure_database()
        seeded = seed(up_port)
        key = seeded["api_key"]
        orch, orch_port = start_orchestrator(int(args.workers), CPU_SERVER, "orchestrator.log")
        procs.append(orch)
        targets = [
            Target("direct", up_port, "direct", proc=upstream),
            Target("execute", orch_port, "execute", key, orch),
        ]
        if gateway_present(orch_port, key):
            targets.append(Target("gateway", orch_port, "gateway", key, orch))
        else:
            notes.append("The gateway (/v1/chat/completions) did not answer 200: not measured.")
        if args.rate_limits:  # the same server, a key whose calls pass three windows
            limits_key = seeded["limits_api_key"]
            targets.append(Target("execute+limits", orch_port, "execute", limits_key, orch))
            targets.append(Target("gateway+limits", orch_port, "gateway", limits_key, orch))
            notes.append(
                "+limits: project bench-limits, whose key has requests and tokens per minute "
                "and calls in flight limited, never reached (the same server; windows in "
                + ("Redis)." if os.environ.get("REDIS_URL") else "the database: no REDIS_URL).")
            )
        if args.spend_budgets:  # the same server, a project whose calls hold 3 levels
            spend_key = seeded["spend_api_key"]
            targets.append(Target("execute+spend", orch_port, "execute", spend_key, orch))
            targets.append(Target("gateway+spend", orch_port, "gateway", spend_key, orch))
            notes.append(
                "+spend: project bench-spend, whose calls hold a month budget on the project "
                "and a day budget on the key besides their session's (the same server)."
            )
        # A second orchestrator beside the first; every scenario alternates between them.
        others = [("-django", BASELINE_ENV, ROOT, key)] if args.baseline else []
        if args.compare_rev:
            path, url = worktree(args.compare_rev)
            print("migrating and seeding", url, "from", path)
            ensure_database(url, path)
            rev_key = seed(up_port, url, path)["api_key"]
            others.append((f" ({args.compare_rev})", {"DATABASE_URL": url}, path, rev_key))
            notes.append(f"({args.compare_rev}): a worktree at {path}, database {url}.")
        if args.otel:
            collector, otel_env = start_collector()
            procs.append(collector)
            others.append(("+otel", otel_env, ROOT, key))
            notes.append(
                "+otel: a second orchestrator (same code, same database, same core) exporting "
                "every operation's spans to a stub OTLP/HTTP collector on the load generator's "
                "core (bench/results/collector.log counts what it received)."
            )
        for suffix, extra_env, root, other_key in others:
            log = f"orchestrator-{suffix.strip('-+ ()')}.log"
            other, port = start_orchestrator(int(args.workers), CPU_SERVER, log, extra_env, root)
            procs.append(other)
            targets.append(Target(f"execute{suffix}", port, "execute", other_key, other))
            targets.append(Target(f"gateway{suffix}", port, "gateway", other_key, other))
        if args.with_litellm:
            started = start_litellm(up_port)
            if started:
                procs.append(started[0])
                targets.append(Target("litellm", started[1], "litellm", proc=started[0]))
            else:
                notes.append("LiteLLM was asked for but is not installed: not measured.")
        names = [t.name for t in targets]
        for repeat in range(repeats):
            for scenario in args.scenarios:
                for target in targets:
                    result = load(target, scenario, args.quick)
                    if result is not None:
                        raw["runs"].setdefault(f"{target.name}/{scenario}", []).append(result)
                        print(f"[{repeat + 1}/{repeats}] {scenario} {summary(target.name, result)}")
            for target in targets:
                if target.proc is not None and target.name != "direct":
                    rss = [round(rss_mb(p), 1) for p in target.proc.worker_pids()]
                    raw["rss"].setdefault(target.name, []).append(rss)
        if args.telemetry_rows:
            notes.append(scenario_g(args, targets, raw))
        for target in targets:
            if target.name not in ("direct", "execute") and target.proc is not orch:
                target.proc.stop()  # (stopping twice is harmless)
        orch.stop()
        for workers in [int(w) for w in args.scaling.split(",") if w]:
            proc, port = start_orchestrator(workers, None, f"orchestrator-{workers}.log")
            try:
                scaled = Target("execute", port, "execute", key, proc)
                for _ in range(repeats):
                    result = load(scaled, "b", args.quick)
                    raw["workers"].setdefault(workers, []).append(result)
                    print(f"[f] {workers} worker(s) {result['rps']:8.1f} rps", flush=True)
            finally:
                proc.stop()
    finally:
        for proc in reversed(procs):
            proc.stop()
    notes.append(
        f"{repeats} repeat(s), medians; {'quick' if args.quick else 'full'} counts; "
        f"orchestrator {args.workers} worker(s) pinned to CPU {CPU_SERVER} for (a)-(e) "
        f"(LiteLLM too), upstream and load generator on CPU {CPU_CLIENT}; PostgreSQL unpinned."
    )
    if not args.telemetry_rows:
        notes.append("(g) statistics/dashboard at 10M rows: not measured by this run.")
    table = report(raw, names, notes)
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    text = f"# Benchmark results ({stamp}, {os.cpu_count()} cores)\n\n{table}"
    (BENCH / "results" / f"{args.out}.md").write_text(text)
    (BENCH / "results" / f"{args.out}.json").write_text(json.dumps(raw, indent=1))
    print(text)


if __name__ == "__main__":
    main()
