"""Shared fixtures: a real nats-server per test session, a wire-level OpenAI fake, helpers.

Isolation comes from unique names (run ids, MASSGEN_HOME per test), not from one server per test.
"""

from __future__ import annotations

import signal
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from massgen_es.bus.jetstream import connect, ensure_streams
from massgen_es.bus.server import NatsServer
from massgen_es.testing.fake_openai import FakeOpenAI

# A shell that starts the suite in the background without job control (`bash -c '... &'`, as CI may) starts
# it with SIGINT ignored, and every child inherits that: the Ctrl-C tests' `massgen` children would never
# see the SIGINT they are sent. Tests play a person at a terminal, where Ctrl-C is delivered.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(scope="session")
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    """A real JetStream nats-server on a free loopback port, for the whole session."""
    with NatsServer(tmp_path_factory.mktemp("nats")) as server:
        yield server


@pytest.fixture
def fresh_nats(tmp_path: Path) -> Iterator[NatsServer]:
    """A nats-server of this test's own (for tests that need an empty log)."""
    with NatsServer(tmp_path / "nats") as server:
        yield server


@pytest.fixture
async def nc(nats_server: NatsServer) -> AsyncIterator:
    """A connected client with the streams in place."""
    client = await connect(nats_server.url, "pytest")
    await ensure_streams(client.jetstream())
    yield client
    await client.close()


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    """The wire-level OpenAI fake on loopback."""
    with FakeOpenAI() as server:
        yield server


@pytest.fixture(autouse=True)
def massgen_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own MASSGEN_HOME and no inherited stack URL."""
    home = tmp_path / "massgen-home"
    monkeypatch.setenv("MASSGEN_HOME", str(home))
    monkeypatch.delenv("MASSGEN_NATS_URL", raising=False)
    return home
