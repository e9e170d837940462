"""Schemathesis over the OpenAPI schema of a real `phalanx serve`: no input
it generates makes a server error."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from tests.service.test_admin import PASSWORD, phalanx
from tests.service.test_serve import Served, make_repo, start, stop


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Served, str]]:
    tmp = tmp_path_factory.mktemp("schema")
    served = start(tmp, make_repo(tmp / "defs"), tmp / "data")
    try:
        add = phalanx(
            "user", "add", "ada", "--role", "admin", "--data", str(served.data),
            cwd=tmp, stdin=PASSWORD + "\n",
        )  # fmt: skip
        assert add.returncode == 0, add.stderr
        token = phalanx("user", "token", "ada", "--data", str(served.data), cwd=tmp)
        assert token.returncode == 0, token.stderr
        yield served, token.stdout.strip()
    finally:
        stop(served)


def test_no_input_makes_a_server_error(service: tuple[Served, str]) -> None:
    served, token = service
    schema = schemathesis.openapi.from_url(f"{served.url}/openapi.json")
    headers = {"Authorization": f"Bearer {token}"}
    checked = []
    errors = []
    for result in schema.get_all_operations():
        operation = result.ok()
        if operation.path.endswith("/events"):
            continue  # a stream that lasts as long as its run: not a request/response

        @given(case=operation.as_strategy())
        @settings(
            max_examples=8,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def call(case: Any) -> None:
            response = case.call(headers=headers, timeout=30)
            if response.status_code >= 500:
                errors.append(
                    (case.method, case.formatted_path, response.status_code, response.text)
                )

        call()
        checked.append(f"{operation.method.upper()} {operation.path}")
    assert "POST /api/suites/{name}/runs" in checked and "GET /api/runs/{run_id}" in checked, (
        checked
    )
    assert errors == []
