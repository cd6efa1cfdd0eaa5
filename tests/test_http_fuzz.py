"""Schemathesis fuzzes a real `taskd serve` against the OpenAPI description it serves, with
every check it has (the Python form of ``st run --checks all``).

Every generated request, valid or deliberately invalid, must get an answer the description
allows (status, content type, headers, body), never a 5xx; invalid input must be refused,
valid input accepted, and ``OPTIONS``/405 must list exactly the documented methods.

One narrow allowance: a built-in task type may check its payload with code a JSON Schema
cannot state (an SSRF guard on a URL, a path inside the files root, one of two recipient
keys). A 422 that names a field *inside* ``payload`` is such a check; a schema-valid
request refused for anything else (limit, cursor, headers, the envelope) still fails.
The per-type payload schemas come from the registry, so as the built-in types declare
schemas, their payloads are held to them here too. Likewise for a workflow: that its
``depends_on`` name keys of the same workflow without a cycle, that its keys are unique,
and that a ``$result`` in a payload names one of the task's dependencies are graph rules
no JSON Schema states; a 422 naming only such places (``tasks.<key>.depends_on``,
``tasks.<key>.payload``, ``tasks[<i>].key``) is allowed as well.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import CHECKS, load_all_checks
from schemathesis.specs.openapi.checks import positive_data_acceptance

from taskd import __version__
from taskd.engine.registry import Registry
from taskd.http.openapi import build_spec
from tests.test_http_support import Daemon

pytestmark = pytest.mark.slow


_GRAPH_RULE = re.compile(r"^tasks(\.[A-Za-z0-9_-]+\.(depends_on|payload)|\[\d+\]\.key)")


def _payload_refusal(body: Any) -> bool:
    """A 422 whose every problem lies inside a task's payload (a type's code check) or
    in a workflow's graph rules."""
    error = body.get("error") if isinstance(body, dict) else None
    details = error.get("details") if isinstance(error, dict) else None
    if not isinstance(details, dict):
        return False
    problems = details.get("errors") or [details]
    return all(
        str(p.get("field", "")).startswith("payload.") or _GRAPH_RULE.match(str(p.get("field", "")))
        for p in problems
    )


def positive_data_accepted(ctx: Any, response: Any, case: Any) -> bool | None:
    """positive_data_acceptance, except for a task type's own payload code checks."""
    if response.status_code == 422 and _payload_refusal(response.json()):
        return None
    return positive_data_acceptance(ctx, response, case)


load_all_checks()
CHECKS_ALL = [c for c in CHECKS.get_all() if c is not positive_data_acceptance]
CHECKS_ALL.append(positive_data_accepted)


@pytest.fixture(scope="module")
def fuzzed(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    """One daemon for the whole module."""
    daemon = Daemon(
        Path(tmp_path_factory.mktemp("fuzz")),
        redis_url,
        # Rate limit off (fuzzing is a flood by design) and a generous Redis deadline: this
        # checks answers, not latency, and a loaded machine must not turn one into a 503.
        env={
            "TASKD_RATE_LIMIT_PER_S": "0",
            "TASKD_LOG_LEVEL": "warning",
            "TASKD_REQUEST_TIMEOUT_S": "30",
        },
    )
    yield daemon
    daemon.close()


def _description() -> dict[str, Any]:
    return build_spec(Registry.from_modules([]), auth_required=False, version=__version__)


# The description is built here exactly as the daemon builds it (same registry of built-in
# types, no auth), so schemathesis can parametrize at collection time; the test below
# checks that the daemon serves this very document.
schema = schemathesis.openapi.from_dict(_description())


def test_daemon_serves_the_fuzzed_description(fuzzed: Daemon) -> None:
    """What is fuzzed is what the daemon serves at /api/openapi.json."""
    served = schemathesis.openapi.from_url(f"{fuzzed.url}/api/openapi.json", wait_for_schema=30)
    assert served.raw_schema == schema.raw_schema


def test_every_check_is_run() -> None:
    """The list holds every check schemathesis has (only positive acceptance is wrapped)."""
    names = {c.__name__ for c in CHECKS_ALL}
    assert {"allow_header_conformance", "negative_data_rejection", "unsupported_method"} <= names
    assert "positive_data_accepted" in names
    assert len(CHECKS_ALL) == len(CHECKS.get_all())


@schema.parametrize()
@pytest.mark.timeout(600)  # every check re-sends probes; a loaded machine is slow
@settings(max_examples=25, deadline=None, database=None, suppress_health_check=list(HealthCheck))
def test_every_response_conforms_to_the_description(
    case: schemathesis.Case[Any], fuzzed: Daemon
) -> None:
    """Generated requests get documented statuses, types, headers and bodies; never 5xx."""
    case.call_and_validate(base_url=fuzzed.url, checks=CHECKS_ALL, timeout=30)
