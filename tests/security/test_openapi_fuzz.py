"""schemathesis against a real REST server: the OpenAPI document is precise enough that no
generated request, valid or not, gets a 5xx or an answer the document does not describe.

Bounded and repeatable: at most ``MAX_EXAMPLES`` examples per operation and generation mode,
derandomized (the same examples every run), no shrinking, no
deadline (a loaded machine is slow, never wrong). Part of ``make test``. schemathesis's Python API
is used rather than its pytest plugin (which does not run under pytest 9).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.generation.modes import GenerationMode

from tests.backend.conftest import BackendFactory, Storage
from tests.helpers.brokers import BrokerProcess

MAX_EXAMPLES = 50


@pytest.fixture(scope="module")
def fuzzed_backend(
    broker: BrokerProcess, storage: Storage, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, str]]:
    factory = BackendFactory(broker, storage.url, storage.alice, tmp_path_factory.mktemp("fuzz"))
    backend = factory(NRP_MAX_SIMULATIONS="2")
    yield backend.url, storage.alice
    factory.stop_all()


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_the_rest_api_matches_its_openapi_document(
    fuzzed_backend: tuple[str, str], mode: GenerationMode
) -> None:
    url, token = fuzzed_backend
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
    failures: list[str] = []
    calls: dict[int, int] = {}
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 7
    for operation in operations:

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=MAX_EXAMPLES,
            deadline=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
            database=None,
            derandomize=True,  # the same examples on every run: make test never flakes on a new one
        )
        def run(case: schemathesis.Case) -> None:
            response = case.call_and_validate(
                base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=60
            )
            calls[response.status_code] = calls.get(response.status_code, 0) + 1

        try:
            run()
        except Unsatisfiable:  # negative mode on an operation without any input: nothing to break
            continue
        except Exception as exc:  # every operation is tried; all failures are reported together
            failures.append(f"{operation.label}: {exc}")
    assert not failures, "\n\n".join(failures)
    print(f"{mode}: answers by status: {dict(sorted(calls.items()))}")
    assert sum(calls.values()) >= len(operations)
