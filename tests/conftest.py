from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pydantic_ai.models
import pytest

from hubspoke import SQLiteStore
from hubspoke.testing import block_model_requests
from tests.pgserver import PostgresServer, missing, postgres_server


@pytest.fixture(autouse=True)
def _no_real_model_requests() -> Iterator[None]:
    """No test reaches a real provider: only offline and function models answer."""
    before = pydantic_ai.models.ALLOW_MODEL_REQUESTS
    block_model_requests()
    yield
    pydantic_ai.models.ALLOW_MODEL_REQUESTS = before


@pytest.fixture(autouse=True)
def _no_model_configuration(monkeypatch: pytest.MonkeyPatch) -> None:
    """Bindings, prices and configuration files from the developer's shell reach no test: a
    foreman reads `HUBSPOKE_MODEL*`, `HUBSPOKE_PRICES` and `HUBSPOKE_CONFIG` by default."""
    for name in list(os.environ):
        if name.startswith("HUBSPOKE_MODEL") or name in ("HUBSPOKE_PRICES", "HUBSPOKE_CONFIG"):
            monkeypatch.delenv(name)


@pytest.fixture(autouse=True)
def _no_otel_configuration(monkeypatch: pytest.MonkeyPatch) -> None:
    """The developer's `OTEL_*` variables reach no test: a foreman traces when they ask for it
    (`hubspoke.tracing.tracing_wanted`), and would send spans to their collector."""
    for name in list(os.environ):
        if name.startswith("OTEL_"):
            monkeypatch.delenv(name)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteStore]:
    s = SQLiteStore(tmp_path / "journal.db")
    yield s
    s.close()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer | str]:
    """One PostgreSQL server for the session (tests/pgserver.py), or why there is none."""
    with postgres_server() as server:
        yield server


@pytest.fixture
def postgres_url(postgres: PostgresServer | str) -> Iterator[str]:
    """The URL of a fresh, empty database on the session's server (skips, or fails in CI,
    when there is no server)."""
    if isinstance(postgres, str):
        missing(postgres)
        raise AssertionError("unreachable")
    with postgres.database() as url:
        yield url
