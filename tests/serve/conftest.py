"""Fixtures of the serve tests: an app over a tiny random generator, and its work folder."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="terramind[serve] is not installed")
from fastapi.testclient import TestClient  # noqa: E402

from terramind.serve.app import ServeConfig, create_app  # noqa: E402
from terramind.serve.host import ModelHost  # noqa: E402

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
S2 = EXAMPLES / "S2L2A" / "38D_378R_2_3.tif"
TINY = Path(__file__).parents[1] / "generation" / "tiny.py"
_spec = importlib.util.spec_from_file_location("serve_gen_tiny", TINY)
assert _spec is not None and _spec.loader is not None
tiny = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(tiny)

INPUTS = ("S2L2A", "S1RTC")
OUTPUTS = ("LULC", "DEM")
FAST = {"diffusion_steps": "1", "tile": "112", "overlap": "16"}  # 4 tiles of the 224 px example


def tiny_host() -> ModelHost:
    """A host over the tiny random generator (seconds to build) and a random v1-tiny encoder for embed."""
    from terramind.api.models import create_backbone

    return ModelHost(
        lambda: tiny.tiny_generator(list(INPUTS), list(OUTPUTS)),
        backbone_factory=lambda: create_backbone("terramind_v1_tiny", list(INPUTS)),
    )


MakeClient = Callable[..., TestClient]


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
