"""Oversized request headers: 431 with a JSON body in the REST shape, on every path, in
process (the ASGI front) and under the real server (uvicorn, whose httptools parser
otherwise buffers a header of any size)."""

import socket

import httpx
import pytest

from tests.edge.helpers import CHAT, execute_body
from tests.pipeline.helpers import EXECUTE

pytestmark = [pytest.mark.django_db(transaction=True)]

PATHS = [
    ("GET", "/healthz"),
    ("POST", EXECUTE),
    ("POST", CHAT),
    ("GET", "/api/v1/presets/"),
    ("GET", "/v1/models"),
    ("GET", "/admin/login/"),
    ("GET", "/no/such/page"),
]


def assert_431(response: httpx.Response, limit: int = 32768) -> None:
    assert response.status_code == 431, response.text[:200]
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {
        "success": False,
        "error_code": "request_header_fields_too_large",
        "error_message": f"The request headers exceed {limit} bytes.",
    }


@pytest.mark.parametrize(("method", "path"), PATHS)
async def test_oversized_headers_are_431_on_every_path(method, path, asgi_client, provider):
    kwargs = {"json": execute_body("big-header")} if method == "POST" else {}
    response = await asgi_client.request(method, path, headers={"X-Big": "a" * 40_000}, **kwargs)
    assert_431(response)


async def test_the_limit_counts_names_and_values_and_comes_from_the_setting(asgi_client, settings):
    settings.AURA = {**settings.AURA, "MAX_HEADER_BYTES": 4000}
    # httpx's own headers (host, accept, user-agent, authorization, ...) count too.
    assert (await asgi_client.get("/healthz", headers={"X-A": "a" * 3000})).status_code == 200
    assert_431(await asgi_client.get("/healthz", headers={"X-A": "a" * 4000}), limit=4000)
    many = {f"X-{i}": "a" * 90 for i in range(45)}  # 45 small headers, 4.2 KB in all
    assert_431(await asgi_client.get("/healthz", headers=many), limit=4000)


# --- Under uvicorn (`manage.py serve`) -------------------------------------------------------


@pytest.mark.parametrize("size", [40_000, 16 * 1024 * 1024])
def test_the_server_answers_431_to_a_big_header_and_still_serves(live_server_url, size):
    with httpx.Client(base_url=live_server_url, timeout=60) as client:
        assert_431(client.get("/healthz", headers={"X-Big": "a" * size}))
        assert client.get("/healthz").status_code == 200


def test_the_server_refuses_a_head_that_never_ends_without_waiting_for_it(live_server_url):
    """httptools buffers a header until it ends; `serve`'s protocol answers 431 once the
    head is far beyond the limit, while the client is still sending it."""
    host, port = live_server_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as conn:
        conn.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: ")
        for _ in range(16):  # 1 MB of one header value, no end of head
            conn.sendall(b"a" * 65536)
        answer = b""
        while chunk := conn.recv(65536):  # the server ends its side after the answer
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 431 "), answer[:200]
    assert b"request_header_fields_too_large" in body


@pytest.mark.django_db
def test_a_host_not_allowed_is_a_400_with_a_code_on_api_paths(client):
    """Django refuses the Host before any view: still JSON with a machine code, in each
    API's shape (it was Django's HTML page)."""
    response = client.get("/api/v1/presets/", HTTP_HOST="evil.example")
    assert response.status_code == 400
    assert response.json()["error_code"] == "invalid_request"
    response = client.get("/v1/models", HTTP_HOST="evil.example")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_request"
    assert client.get("/admin/", HTTP_HOST="evil.example").status_code == 400
