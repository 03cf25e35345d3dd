"""Property-based API run against the OpenAPI schema, logged in with the CSRF header: no 5xx anywhere."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error

from services.review.core import encode_id
from tests.services.review.conftest import login

pytestmark = pytest.mark.integration

# Small on purpose: the run stays well under a minute on a shared two-core machine.
MAX_EXAMPLES = 12


def _fuzz(operation: Any, auth: dict[str, str], cookies: dict[str, str], real_id: str) -> None:
    @given(case=operation.as_strategy())
    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )
    def run(case: Any) -> None:
        case.call_and_validate(
            headers={**(case.headers or {}), **auth}, cookies=cookies, checks=[not_a_server_error]
        )
        if case.path_parameters and "item_id" in case.path_parameters:
            # Random ids are refused early; fuzz the rest of the request against a real item too.
            case.path_parameters["item_id"] = real_id
            case.call_and_validate(
                headers={**(case.headers or {}), **auth}, cookies=cookies, checks=[not_a_server_error]
            )

    run()


def test_no_server_error(app_factory: Callable[..., TestClient], put_unclear: Callable[..., str]) -> None:
    keys = [put_unclear(f"line-1/img_{i}.jpg") for i in range(3)]
    schema = schemathesis.openapi.from_asgi("/openapi.json", app_factory().app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 13
    for operation in operations:
        # A fresh login per operation, so fuzzing /api/logout cannot end the others' session.
        client = app_factory()
        login(client, "alice")
        _fuzz(
            operation,
            {"X-CSRF-Token": client.headers["X-CSRF-Token"]},
            dict(client.cookies.items()),
            encode_id(keys[0]),
        )
