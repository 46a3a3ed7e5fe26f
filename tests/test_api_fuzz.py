"""Property-based fuzzing of the live server from its own OpenAPI document (schemathesis).

Every operation gets bounded random requests, valid and invalid; the server must never
answer 5xx (501 "not built yet" aside), must answer only statuses and bodies its document
declares, and every error must be in the contract's shape. Path names are steered towards
a real collection so the fuzzing reaches past "404 no such collection".
"""
from __future__ import annotations

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import (content_type_conformance, not_a_server_error, response_schema_conformance,
                                 status_code_conformance)

from test_server_process import ServerProcess
from test_server_routes import CONTRACT_ROUTES

ADMIN = "fuzz-admin-key"
COLLECTION = "fuzz"
MAX_EXAMPLES = 20


def seed(url: str) -> None:
    """(Re)create the collection the fuzzer's path names point at, with a few records."""
    with httpx.Client(base_url=url + "/v1", headers={"Authorization": f"Bearer {ADMIN}"}, timeout=60) as c:
        c.put(f"/collections/{COLLECTION}", json={"model": "none", "dim": 4, "group_field": "g"})
        records = [{"_id": f"id{i}", "_vector": [1, i, i % 3, 1], "g": i % 2, "price": i, "tags": ["a", str(i)]}
                   for i in range(8)]
        c.post(f"/collections/{COLLECTION}/records", json={"records": records})


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory):
    with ServerProcess(tmp_path_factory.mktemp("fuzz") / "data", "--admin-key", ADMIN,
                       "--max-body-bytes", str(256 * 1024)) as server:
        seed(server.url)
        yield server


@pytest.fixture(scope="module")
def api_schema(fuzz_server):
    return schemathesis.openapi.from_url(fuzz_server.url + "/openapi.json")


def check_case(case, url: str) -> int:
    response = case.call(base_url=url, headers={"Authorization": f"Bearer {ADMIN}"}, timeout=60)
    assert response.status_code < 500 or response.status_code == 501, \
        f"{case.method} {case.formatted_path} -> {response.status_code}: {response.text[:500]}"
    if (case.method.lower(), case.path) in CONTRACT_ROUTES:  # the web page's own routes: no 5xx, error shape
        case.validate_response(response, checks=[not_a_server_error, status_code_conformance,
                                                 content_type_conformance, response_schema_conformance])
    if response.status_code >= 400:
        body = response.json()
        assert set(body) == {"error"} and {"code", "message"} <= set(body["error"]), body
    if case.method.upper() == "DELETE" and case.path == "/v1/collections/{name}":
        seed(url)  # keep something to fuzz against
    return response.status_code


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=["valid", "invalid"])
def test_no_server_errors_and_answers_match_the_schema(api_schema, fuzz_server, mode) -> None:
    """Each operation, MAX_EXAMPLES requests; path names mostly steered to the real collection."""
    failures: list[str] = []
    statuses: dict[str, set[int]] = {}
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 15
    for operation in operations:
        @given(case=operation.as_strategy(generation_mode=mode), steer=st.integers(0, 3))
        @settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        def run(case, steer: int) -> None:
            params = case.path_parameters or {}
            if "name" in params and steer:
                params["name"] = COLLECTION
            if "record_id" in params and steer == 1:
                params["record_id"] = "id3"
            body = case.body
            if steer >= 2 and isinstance(body, dict):  # a real anchor, so the other parameters get exercised
                if "query" in body:
                    body["query"] = {"id": f"id{steer}"}
                if steer == 2:  # and no random anchors or boost rules, so k/filter/fields/... get through
                    body.pop("negative", None)
                    body.pop("boost", None)
                if isinstance(body.get("id"), str):
                    body["id"] = "id5"
            statuses.setdefault(operation.label, set()).add(check_case(case, fuzz_server.url))
        seed(fuzz_server.url)  # an earlier operation's fuzzing may have deleted the records steered to
        try:
            run()
        except Unsatisfiable:  # nothing invalid to send (an operation without parameters or body)
            assert mode == GenerationMode.NEGATIVE, operation.label
        except Exception as exc:  # keep going: report every failing operation at once
            failures.append(f"{operation.label}: {type(exc).__name__}: {str(exc)[:1500]}")
    assert not failures, "\n\n".join(failures)
    if mode == GenerationMode.POSITIVE:  # the fuzzing got past validation into the engine
        for label in ("POST /v1/collections/{name}/search", "POST /v1/collections/{name}/recommend",
                      "GET /v1/collections/{name}", "PUT /v1/collections/{name}"):
            assert any(200 <= s < 300 for s in statuses[label]), (label, statuses[label])
