"""``POST /v1/embed`` runs the encoder in the request's ``precision``, by default the server's
``--precision``.
"""

from __future__ import annotations

import io

import numpy as np
from serve_support import S2, MakeClient


def _tokens(client, **fields: str) -> np.ndarray:  # type: ignore[no-untyped-def]
    files = {"S2L2A": (S2.name, S2.read_bytes(), "image/tiff")}
    answer = client.post("/v1/embed", files=files, data={"pooling": "tokens", "format": "npy", **fields})
    assert answer.status_code == 200, answer.text
    return np.load(io.BytesIO(answer.content))  # (196, 192)


def test_embed_route_takes_the_precision(make_client: MakeClient, tmp_path) -> None:  # type: ignore[no-untyped-def]
    fp32_server = make_client(work_dir=tmp_path / "a", precision="fp32")
    fp32 = _tokens(fp32_server)
    np.testing.assert_array_equal(_tokens(fp32_server, precision="fp32"), fp32)  # default: the server's
    bf16 = _tokens(fp32_server, precision="bf16")
    assert not np.array_equal(bf16, fp32)  # the request's precision reaches the encoder
    bf16_server = make_client(work_dir=tmp_path / "b", precision="bf16")
    np.testing.assert_array_equal(_tokens(bf16_server), bf16)
    refused = bf16_server.post("/v1/embed", files={"S2L2A": (S2.name, S2.read_bytes(), "image/tiff")},
                               data={"precision": "fp16"})  # fmt: skip
    assert refused.status_code == 422 and "precision must be one of auto, fp32, bf16" in refused.text
