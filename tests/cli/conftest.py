"""The ``nrp sim`` tests run against the REST server fixtures of ``tests/backend`` (real broker,
storage server and ``nrp backend`` processes; the stand-in simserver plays each experiment's part)."""

from tests.backend.conftest import broker, start_backend, storage  # noqa: F401
