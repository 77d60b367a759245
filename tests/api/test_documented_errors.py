"""The statuses a fuzzer does not provoke are documented too, in each endpoint's shape.

For every operation of /api/schema/, on a real server: a request without a key (401),
with a method its path does not take (405), with an `Accept` it cannot satisfy (406),
with oversized headers (431) and, for operations with a body, a non-JSON body (415) and
one over the size limit (413). Each answer must carry the status provoked and be one the
operation documents: status, content type, headers, body schema and error code.
"""

import httpx
import pytest
import schemathesis
from django.conf import settings

from tests.api.conformance import problems

PATH_VALUES = {"session_id": "no-such-session", "operation_type": "planning", "model_id": "x"}


def _provocations(operation, key: str) -> list[tuple[int, str, dict, bytes]]:
    """(status expected, method, headers, body) of each request to send."""
    auth = {"Authorization": f"Bearer {key}"}
    method = operation.method.upper()
    has_body = operation.body is not None and len(operation.body) > 0
    json_body = {"Content-Type": "application/json"} if has_body else {}
    body = b"{}" if has_body else b""
    header_limit = settings.AURA.get("MAX_HEADER_BYTES", 32768)
    sent = [
        (401, method, json_body, body),
        (405, "PUT", {**auth, **json_body}, body),  # no path of ours takes PUT
        (431, method, {**auth, **json_body, "X-Padding": "a" * (header_limit + 1)}, body),
    ]
    if "406" in operation.definition.raw["responses"]:  # the gateway answers whatever Accept
        sent.append((406, method, {**auth, **json_body, "Accept": "text/html"}, body))
    if has_body:
        too_big = b'{"prompt": "' + b"a" * settings.DATA_UPLOAD_MAX_MEMORY_SIZE + b'"}'
        sent += [
            (415, method, {**auth, "Content-Type": "text/plain"}, b"hello"),
            (413, method, {**auth, **json_body}, too_big),
        ]
    return sent


@pytest.mark.django_db(transaction=True)
def test_transport_errors_are_documented_in_each_endpoints_shape(live_server_url, api_key):
    schema = schemathesis.openapi.from_url(f"{live_server_url}/api/schema/")
    operations = [result.ok() for result in schema.get_all_operations()]
    found = []
    with httpx.Client(base_url=live_server_url, timeout=30) as client:
        for operation in operations:
            assert "put" not in schema.raw_schema["paths"][operation.path]
            path_values = {p.name: PATH_VALUES[p.name] for p in operation.path_parameters}
            case = operation.Case(path_parameters=path_values)
            url = operation.path.format(**path_values)
            for status, method, headers, body in _provocations(operation, api_key.raw_key):
                response = client.request(method, url, headers=headers, content=body)
                where = f"{operation.label} ({method}, expecting {status})"
                if response.status_code != status:
                    found.append(f"{where}: {response.status_code} {response.text[:300]}")
                    continue
                for kind, detail in problems(case, response):
                    found.append(f"{where}: {kind}: {detail}\n  {response.text[:300]}")
    assert not found, "\n\n".join(found)


@pytest.mark.django_db(transaction=True)
def test_too_many_query_parameters_are_a_400_in_each_endpoints_shape(live_server_url, api_key):
    schema = schemathesis.openapi.from_url(f"{live_server_url}/api/schema/")
    query = "&".join(f"p{i}=1" for i in range(settings.DATA_UPLOAD_MAX_NUMBER_FIELDS + 1))
    headers = {"Authorization": f"Bearer {api_key.raw_key}", "Content-Type": "application/json"}
    found = []
    with httpx.Client(base_url=live_server_url, timeout=30) as client:
        for operation in [result.ok() for result in schema.get_all_operations()]:
            path_values = {p.name: PATH_VALUES[p.name] for p in operation.path_parameters}
            url = operation.path.format(**path_values) + "?" + query
            body = b"{}" if operation.body else b""
            response = client.request(operation.method, url, headers=headers, content=body)
            case = operation.Case(path_parameters=path_values)
            if response.status_code != 400:
                found.append(f"{operation.label}: {response.status_code} {response.text[:200]}")
            found += [
                f"{operation.label}: {kind}: {detail}" for kind, detail in problems(case, response)
            ]
    assert not found, "\n".join(found)


@pytest.mark.django_db(transaction=True)
def test_a_stream_may_be_asked_for_with_accept_text_event_stream(
    live_server_url, api_key, provider
):
    response = httpx.post(
        f"{live_server_url}/v1/chat/completions",
        headers={"Authorization": f"Bearer {api_key.raw_key}", "Accept": "text/event-stream"},
        json={"model": "sim-gpt", "messages": [{"role": "user", "content": "Hi"}], "stream": True},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/event-stream")
