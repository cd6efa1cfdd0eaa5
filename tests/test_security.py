"""Security hardening, checked from the outside: auth on every write, no cookies, browser
headers, input limits, the task types' SSRF and path guards, and secrets that never leak
into logs, error bodies or diagnostics - also over an ACL user and ``rediss://``."""

from __future__ import annotations

import asyncio
import csv
import io
import os
import re
import shutil
import signal
import ssl
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient

from taskd import config
from taskd.embedded import EmbeddedRedis
from taskd.errors import ConfigError
from taskd.handlers.artifacts import artifact_path
from taskd.http.app import ROUTES
from taskd.model import make_spec
from taskd.store import Store
from tests.chaos.harness import http
from tests.chaos.proxy import LatencyProxy
from tests.conftest import eventually
from tests.handlertools import call, finished, running_pool, settings_at
from tests.procs import REPO, DaemonProcess, free_port
from tests.test_http_support import serve_app

Client = TestClient[Any, Any]
FULL, READ = "full-token-0123456789", "read-token-0123456789"
WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})
ID = "0" * 32


def concrete(path: str, queue: str) -> str:
    """A route path with its placeholders filled in."""
    return path.replace("{task_id}", ID).replace("{name}", queue)


@pytest.fixture
async def client(store: Store) -> AsyncIterator[Client]:
    """The app with one full and one read-only token, rate limit off."""
    async with serve_app(store, auth__tokens=FULL, auth__read_tokens=READ) as c:
        yield c


def bearer(token: str) -> dict[str, str]:
    """The Authorization header for a token."""
    return {"Authorization": f"Bearer {token}"}


async def test_every_write_route_needs_a_full_token(client: Client, queue: str) -> None:
    """Each state-changing route of the route table, bulk ones too: 401 bare, 403 read-only."""
    writes = [(m, p) for m, p, _ in ROUTES if m in WRITES]
    assert {"/api/tasks/bulk/cancel", "/api/queues/{name}/purge"} <= {p for _, p in writes}
    for method, path in writes:
        url = concrete(path, queue)
        bare = await client.request(method, url, json={})
        assert bare.status == 401, (method, path)
        read_only = await client.request(method, url, json={}, headers=bearer(READ))
        assert read_only.status == 403, (method, path)
    stats = await client.get(f"/api/queues/{queue}", headers=bearer(FULL))
    assert stats.status in {200, 404}  # nothing was created, paused or purged


async def test_artifact_download_needs_a_token(client: Client) -> None:
    """Task artifacts (reports) are not downloadable without a token."""
    reply = await client.get(f"/api/tasks/{ID}/artifacts/report.html")
    assert reply.status == 401


async def test_no_route_sets_a_cookie(client: Client, queue: str) -> None:
    """Auth is a bearer header only: no response carries a cookie a browser would resend."""
    for method, path, _ in ROUTES:
        if method != "GET" or path == "/ws":
            continue
        reply = await client.get(concrete(path, queue), headers=bearer(FULL))
        assert "Set-Cookie" not in reply.headers, path


async def test_dashboard_headers_forbid_inline_script_and_framing(client: Client) -> None:
    """The dashboard sends a CSP without inline script, nosniff, and refuses to be framed."""
    page = await client.get("/")
    assert page.status == 200
    csp = page.headers["Content-Security-Policy"]
    directives = dict(d.strip().split(" ", 1) for d in csp.split(";") if " " in d.strip())
    script = directives.get("script-src", directives.get("default-src", ""))
    assert "'unsafe-inline'" not in script
    assert "'unsafe-eval'" not in script
    assert directives.get("frame-ancestors") == "'none'"
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    assert "<script>" not in (await page.text()).replace(" ", "")


async def test_oversized_and_deeply_nested_payloads_are_refused(
    client: Client, store: Store, queue: str
) -> None:
    """A body over the size limit gets 413, a payload nested 200 deep 4xx; nothing is stored."""
    big = {"task_type": "email", "queue": queue, "payload": {"x": "a" * 2_000_000}}
    raw = io.BytesIO(orjson.dumps(big))
    headers = bearer(FULL) | {"Content-Type": "application/json"}
    too_big = await client.post("/api/tasks", data=raw, headers=headers)
    assert too_big.status == 413
    deep: dict[str, Any] = {}
    inner = deep
    for _ in range(200):
        inner["a"] = {}
        inner = inner["a"]
    body = {"task_type": "data_processing", "queue": queue, "payload": deep}
    nested = await client.post("/api/tasks", json=body, headers=bearer(FULL))
    assert 400 <= nested.status < 500
    assert (await nested.json())["error"]["code"]
    assert (await store.stats(queue))["total"] == 0


@pytest.mark.parametrize(
    ("task_type", "payload"),
    [
        ("api_call", {"url": "http://127.0.0.1:1/admin"}),
        ("api_call", {"url": "http://169.254.169.254/latest/meta-data/"}),
        ("api_call", {"url": "http://[::1]:8000/"}),
        ("file_conversion", {"source": "../../etc/passwd", "to": "json"}),
        ("file_conversion", {"source": "/etc/passwd", "to": "json"}),
    ],
)
async def test_task_type_guards_refuse_at_submit(
    client: Client, store: Store, queue: str, task_type: str, payload: dict[str, Any]
) -> None:
    """Loopback, link-local and traversal targets are refused with 422 before anything runs."""
    body = {"task_type": task_type, "queue": queue, "payload": payload}
    reply = await client.post("/api/tasks", json=body, headers=bearer(FULL))
    assert reply.status == 422, await reply.text()
    assert (await store.stats(queue))["total"] == 0


async def test_error_bodies_never_echo_a_token(client: Client) -> None:
    """A wrong token is refused without being repeated back, and a 404 names no secret."""
    wrong = "wrong-" + uuid.uuid4().hex
    reply = await client.get("/api/tasks", headers=bearer(wrong))
    assert reply.status == 401
    assert wrong not in await reply.text()
    missing = await client.get(f"/api/tasks/{ID}", headers=bearer(FULL))
    assert missing.status == 404
    text = await missing.text()
    assert FULL not in text
    assert READ not in text


PASSWORD = "pw-" + uuid.uuid4().hex
ACL_USER = ("--user", "taskd", "on", f">{PASSWORD}", "~*", "&*", "+@all")


@pytest.fixture
async def acl_redis(tmp_path: Path) -> AsyncIterator[EmbeddedRedis]:
    """A Redis with an ACL user ``taskd`` whose password is PASSWORD."""
    server = EmbeddedRedis(
        tmp_path / "acl-redis",
        unix_socket=False,
        port=free_port(),
        appendonly=False,
        extra_args=ACL_USER,
    )
    await server.start()
    yield server
    await server.stop()


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def _secrets_absent(text: str) -> None:
    for secret in (PASSWORD, FULL, READ):
        assert secret not in text


@pytest.mark.slow
async def test_redis_password_and_tokens_never_leak(
    acl_redis: EmbeddedRedis, queue: str, tmp_path: Path
) -> None:
    """The Redis ACL password and API tokens appear in no log line or answer, even in outages."""
    url = f"redis://taskd:{PASSWORD}@127.0.0.1:{_port(acl_redis.url)}/0"
    env = {"TASKD_AUTH_TOKENS": FULL, "TASKD_READ_TOKENS": READ, "TASKD_LOG_LEVEL": "debug"}
    daemon = DaemonProcess(tmp_path / "d", "--redis-url", url, "--queues", queue, env=env)
    seen: list[str] = []
    try:
        await daemon.ready()
        auth = f"{daemon.url}/api/tasks"
        created = await _call(
            "POST",
            auth,
            FULL,
            {"task_type": "data_processing", "queue": queue, "payload": {"records": 10}},
        )
        seen.append(str(created.body))
        assert created.status == 201
        task_url = f"{auth}/{created.body['id']}"

        async def completed() -> bool:
            reply = await _call("GET", task_url, READ)
            return bool(reply.body["status"] == "completed")

        await eventually(completed)
        for path in ("/api/redis", "/api/workers", "/readyz", "/metrics", "/api/openapi.json"):
            seen.append(str((await _call("GET", daemon.url + path, FULL)).body))
        wrong = await _call("GET", auth, "not-" + FULL)
        assert wrong.status == 401
        seen.append(str(wrong.body))
        await acl_redis.stop()
        down = await _call("GET", daemon.url + "/readyz", None)
        assert down.status == 503
        refused = await _call("POST", auth, FULL, {"task_type": "email", "payload": {}})
        assert refused.status in {422, 503}
        seen += [str(down.body), str(refused.body)]
        await acl_redis.start()
        await daemon.ready()
        daemon.kill(signal.SIGTERM)
        assert await daemon.wait() == 0
        output = daemon.output()
    finally:
        daemon.close()
    assert "redis://taskd:***@127.0.0.1" in output
    _secrets_absent(output)
    for body in seen:
        _secrets_absent(body)


def test_wrong_redis_password_fails_with_one_line_without_it(
    acl_redis: EmbeddedRedis, tmp_path: Path
) -> None:
    """A rejected Redis password stops startup with one line that does not repeat it."""
    wrong = "wrong-" + uuid.uuid4().hex
    url = f"redis://taskd:{wrong}@127.0.0.1:{_port(acl_redis.url)}/0"
    result = subprocess.run(
        [sys.executable, "-m", "taskd", "serve", "--redis-url", url, "--port", str(free_port())],
        env={
            "PYTHONPATH": str(REPO),
            "TASKD_DATA_DIR": str(tmp_path),
            "PATH": "/usr/bin:/bin",
            "TASKD_LOG_FORMAT": "json",
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1, result.stderr
    assert wrong not in result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def _make_certs(folder: Path) -> tuple[Path, Path, Path]:
    """A throw-away CA and a server certificate for 127.0.0.1, made with openssl."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not installed")
    folder.mkdir(parents=True, exist_ok=True)
    ca_key, ca, key, csr, cert = (
        folder / n for n in ("ca.key", "ca.crt", "srv.key", "srv.csr", "srv.crt")
    )
    ext = folder / "ext.cnf"
    ext.write_text("subjectAltName=IP:127.0.0.1\n")
    for argv in (
        [
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            ca_key,
            "-out",
            ca,
            "-days",
            "1",
            "-subj",
            "/CN=taskd test CA",
        ],
        [
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            key,
            "-out",
            csr,
            "-subj",
            "/CN=127.0.0.1",
        ],
        [
            "x509",
            "-req",
            "-in",
            csr,
            "-CA",
            ca,
            "-CAkey",
            ca_key,
            "-CAcreateserial",
            "-out",
            cert,
            "-days",
            "1",
            "-extfile",
            ext,
        ],
    ):
        subprocess.run([openssl, *map(str, argv)], capture_output=True, check=True, timeout=60)
    return ca, cert, key


@pytest.mark.slow
async def test_rediss_with_an_acl_user_works_and_verifies_the_server(
    acl_redis: EmbeddedRedis, queue: str, tmp_path: Path
) -> None:
    """rediss:// (TLS, verified against a CA) with an ACL user runs tasks; a wrong CA is fatal."""
    ca, cert, key = _make_certs(tmp_path / "tls")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    front = LatencyProxy("127.0.0.1", _port(acl_redis.url), 0.0, server_ssl=context)
    port = await front.start()
    url = f"rediss://taskd:{PASSWORD}@127.0.0.1:{port}/0?ssl_ca_certs={ca}"
    env = {"TASKD_AUTH_TOKENS": FULL}
    daemon = DaemonProcess(tmp_path / "d", "--redis-url", url, "--queues", queue, env=env)
    try:
        await daemon.ready()
        body = {"task_type": "data_processing", "queue": queue, "payload": {"records": 10}}
        created = await _call("POST", f"{daemon.url}/api/tasks", FULL, body)
        assert created.status == 201

        async def completed() -> bool:
            reply = await _call("GET", f"{daemon.url}/api/tasks/{created.body['id']}", FULL)
            return bool(reply.body["status"] == "completed")

        await eventually(completed)
        output = daemon.output()
        # Another CA: the server is not trusted, so the daemon does not start.
        other_ca, _, _ = _make_certs(tmp_path / "other")
        bad_url = f"rediss://taskd:{PASSWORD}@127.0.0.1:{port}/0?ssl_ca_certs={other_ca}"
        result = await asyncio.to_thread(
            subprocess.run,
            [
                sys.executable,
                "-m",
                "taskd",
                "serve",
                "--redis-url",
                bad_url,
                "--port",
                str(free_port()),
            ],
            env={
                "PYTHONPATH": str(REPO),
                "TASKD_DATA_DIR": str(tmp_path / "bad"),
                "PATH": "/usr/bin:/bin",
            },
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        daemon.close()
        await front.close()
    assert "rediss://taskd:***@127.0.0.1" in output
    _secrets_absent(output)
    assert result.returncode == 1
    assert PASSWORD not in result.stderr
    assert re.search(r"TLS connection to redis failed.*CERTIFICATE_VERIFY_FAILED", result.stderr), (
        result.stderr
    )


async def _call(method: str, url: str, token: str | None, body: Any = None) -> Any:
    """An HTTP request with an optional bearer token (urllib in a thread)."""
    return await http(method, url, body, headers=bearer(token) if token else None)


@pytest.mark.parametrize(
    "to",
    [
        "a@example.com, v0@evil.example",  # getaddresses would send to both
        "undisclosed: a@example.com, b@evil.example;",  # group syntax
        ["a@example.com", "x@example.com, y@evil.example"],
    ],
)
async def test_email_recipients_are_validated_as_they_will_be_sent(
    client: Client, store: Store, queue: str, to: Any
) -> None:
    """One string that hides several addresses is refused, so the 100-recipient limit and
    the address checks hold for exactly the envelope that would be sent."""
    body = {"task_type": "email", "queue": queue, "payload": {"to": to, "subject": "s"}}
    reply = await client.post("/api/tasks", json=body, headers=bearer(FULL))
    assert reply.status == 422, await reply.text()
    assert (await store.stats(queue))["total"] == 0


@pytest.mark.parametrize("char", ["\x00", "\x0b", "\x0c", "\x85", "\u2028", "\u2029", "\x1b"])
async def test_email_subject_control_characters_are_refused_at_submit(
    client: Client, store: Store, queue: str, char: str
) -> None:
    """NUL, VT, FF, NEL, line/paragraph separators and ESC never reach a header: 422."""
    payload = {"to": "a@example.com", "subject": f"hello{char}world"}
    body = {"task_type": "email", "queue": queue, "payload": payload}
    reply = await client.post("/api/tasks", json=body, headers=bearer(FULL))
    assert reply.status == 422, await reply.text()
    assert (await reply.json())["error"]["details"]["field"] == "payload.subject"


async def test_handler_os_errors_show_no_absolute_server_path(
    store: Store, queue: str, tmp_path: Path
) -> None:
    """A file task failing on the file system reports the path relative to the data dir."""
    settings = settings_at(tmp_path)
    settings.files_root.mkdir(parents=True)
    (settings.files_root / "in.csv").write_text("a,b\n1,2\n")
    (settings.files_root / "blocker").write_text("a file where a folder must go")
    async with running_pool(store, queue, settings):
        ((task, _),) = await store.submit(
            [
                make_spec(
                    "file_conversion",
                    {"source": "in.csv", "target": "blocker/out.json"},
                    queue=queue,
                    max_retries=0,
                )
            ]
        )
        done = await finished(store, task.id)
    assert done.error
    assert str(tmp_path) not in done.error
    assert "files/blocker" in done.error


_TERMINAL_UNSAFE = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\u2028\u2029]")


@pytest.mark.slow
async def test_cli_escapes_control_characters_of_task_names(
    redis_url: str, queue: str, tmp_path: Path
) -> None:
    """`taskd get` and `taskd list` show ESC sequences and bidi overrides as escapes."""
    name = "evil\x1b]0;owned\x07\x1b[2J\u202egnp.exe\x9b31m"
    daemon = DaemonProcess(tmp_path / "d", "--redis-url", redis_url, "--queues", queue)
    try:
        await daemon.ready()
        body = {"task_type": "data_processing", "queue": queue, "name": name}
        created = await _call(
            "POST", f"{daemon.url}/api/tasks", None, body | {"payload": {"records": 1}}
        )
        assert created.status == 201, created.body
        task_id = created.body["id"]
        env = {"TASKD_URL": daemon.url}
        for args in (("get", task_id), ("list", "--queue", queue)):
            out = await asyncio.to_thread(
                subprocess.run,
                [sys.executable, "-m", "taskd", *args],
                capture_output=True,
                text=True,
                env=dict(os.environ) | env,
                timeout=60,
                check=True,
            )
            assert not _TERMINAL_UNSAFE.search(out.stdout), (args, out.stdout)
            assert "\\x1b" in out.stdout, args
    finally:
        daemon.close()


async def test_report_csv_neutralises_formula_cells(tmp_path: Path) -> None:
    """Text cells starting with =, +, -, @ (and tab/CR) get a leading quote; numbers,
    negative ones too, stay numbers."""
    settings = settings_at(tmp_path)
    records = [
        {"name": '=HYPERLINK("http://evil.example","x")', "amount": -5},
        {"name": "+1+cmd|' /C calc'!A0", "amount": 3},
        {"name": "-2", "amount": 1},
        {"name": "@SUM(1)", "amount": 2},
        {"name": "plain", "amount": 0},
    ]
    result, ctx, _ = await call(
        "report_generation", {"records": records, "formats": ["csv"]}, settings
    )
    path = artifact_path(settings, ctx.task_id, "report.csv")
    rows = list(csv.DictReader(io.StringIO(path.read_text())))
    names = [r["name"] for r in rows]
    assert all(not n.startswith(("=", "+", "-", "@")) for n in names), names
    assert '\'=HYPERLINK("http://evil.example","x")' in names
    assert "plain" in names
    assert "-5" in [r["amount"] for r in rows]
    assert result["artifacts"][0]["name"] == "report.csv"


@pytest.mark.parametrize(
    "url",
    ["redis//:S3cret-pw@127.0.0.1:6379/0", "redis:/u:S3cret-pw@host:6379", "u:S3cret-pw@host"],
)
def test_config_errors_mask_passwords_of_malformed_urls(url: str, tmp_path: Path) -> None:
    """A Redis URL without a proper scheme is refused without echoing its password."""
    with pytest.raises(ConfigError) as refused:
        config.load(None, {"HOME": str(tmp_path), "REDIS_URL": url}, {})
    assert "S3cret-pw" not in str(refused.value)
    assert "***" in str(refused.value)


@pytest.mark.parametrize(
    "url",
    [
        "http://[2002:7f00:1::]:8000/",  # 6to4 of 127.0.0.1
        "http://[2002:a9fe:a9fe::]/latest/meta-data/",  # 6to4 of 169.254.169.254
        "http://[2002:c0a8:101::1]/",  # 6to4 of 192.168.1.1
        "http://[64:ff9b::7f00:1]/",  # NAT64 of 127.0.0.1
        "http://[64:ff9b::a00:1]/",  # NAT64 of 10.0.0.1
        "http://[::127.0.0.1]/",  # IPv4-compatible loopback
    ],
)
async def test_ssrf_guard_refuses_ipv4_embedded_in_ipv6(
    client: Client, store: Store, queue: str, url: str
) -> None:
    """6to4, NAT64 and IPv4-compatible literals are judged by the IPv4 address they reach."""
    body = {"task_type": "api_call", "queue": queue, "payload": {"url": url}}
    reply = await client.post("/api/tasks", json=body, headers=bearer(FULL))
    assert reply.status == 422, await reply.text()
    assert (await store.stats(queue))["total"] == 0
