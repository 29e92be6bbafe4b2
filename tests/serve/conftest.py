"""Fixtures of the serve tests: started test clients over a tiny random generator, and their work folder."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="terramind[serve] is not installed")
from fastapi.testclient import TestClient
from serve_support import EXAMPLES, MakeClient, tiny_host

from terramind.serve.app import ServeConfig, create_app


@pytest.fixture
def make_client(tmp_path: Path) -> Iterator[MakeClient]:
    """Factory of started test clients over ``tmp_path/work`` (config fields as keywords); closed after."""
    clients: list[TestClient] = []

    def make(**changes: object) -> TestClient:
        fields = {"work_dir": tmp_path / "work", "examples_dir": EXAMPLES, **changes}
        app = create_app(ServeConfig(**fields), tiny_host())  # type: ignore[arg-type]
        client = TestClient(app)
        client.__enter__()
        clients.append(client)
        assert app.state.host.wait(60), app.state.host.error
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture
def client(make_client: MakeClient) -> TestClient:
    """A client of an open server (no token, no data root)."""
    return make_client()
