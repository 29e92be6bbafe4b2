"""The Lightning-free tile layer: imports without Lightning, seeded augmentation, one tile size per batch."""

from __future__ import annotations

import subprocess
import sys


def test_data_layer_and_embed_import_without_lightning() -> None:
    # A base install has no Lightning: block it and import what `terramind embed` and evaluation need.
    code = (
        "import sys; sys.modules['lightning'] = None; sys.modules['pytorch_lightning'] = None\n"
        "import terramind.data, terramind.data.tiles, terramind.evaluate.embeddings, terramind.cli.embed\n"
        "assert 'lightning' not in {m.split('.')[0] for m in sys.modules if sys.modules[m] is not None}\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
