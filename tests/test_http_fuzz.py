"""Schemathesis fuzzes a real `taskd serve` against the OpenAPI description it serves.

Every generated request (valid and deliberately invalid ones) must get an answer that the
description allows: a documented status, content type, headers and body schema, never a
5xx, and invalid input must be rejected. "Valid input must be accepted" is not checked:
task types validate their payloads with code (a recipient for email, a record source for
data_processing) that a JSON Schema cannot state, so random payloads are rightly refused.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from taskd import __version__
from taskd.engine.registry import Registry
from taskd.http.openapi import build_spec
from tests.test_http_support import Daemon

pytestmark = pytest.mark.slow
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
]


@pytest.fixture(scope="module")
def fuzzed(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    """One daemon for the whole module, rate limit off (fuzzing is a flood by design)."""
    daemon = Daemon(
        Path(tmp_path_factory.mktemp("fuzz")),
        redis_url,
        env={"TASKD_RATE_LIMIT_PER_S": "0", "TASKD_LOG_LEVEL": "warning"},
    )
    yield daemon
    daemon.close()


# The description is built here exactly as the daemon builds it (same registry of built-in
# types, no auth), so schemathesis can parametrize at collection time; the test below
# checks that the daemon serves this very document.
schema = schemathesis.openapi.from_dict(
    build_spec(Registry.from_modules([]), auth_required=False, version=__version__)
)


def test_daemon_serves_the_fuzzed_description(fuzzed: Daemon) -> None:
    """What is fuzzed is what the daemon serves at /api/openapi.json."""
    served = schemathesis.openapi.from_url(f"{fuzzed.url}/api/openapi.json", wait_for_schema=30)
    assert served.raw_schema == schema.raw_schema


@schema.parametrize()
@settings(max_examples=40, deadline=None, database=None, suppress_health_check=list(HealthCheck))
def test_every_response_conforms_to_the_description(
    case: schemathesis.Case[Any], fuzzed: Daemon
) -> None:
    """Generated requests get documented statuses, types, headers and bodies; never 5xx."""
    case.call_and_validate(base_url=fuzzed.url, checks=CHECKS, timeout=10)
