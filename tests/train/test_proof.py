import math

import numpy as np

from terramind.train.proof import QUICK, markdown, run_proof


def test_reduced_proof_learns(examples_dir, tmp_path):
    """The CI form of scripts/proof_pretrain.sh: a few steps of each stage; the losses fall."""
    results = run_proof(examples_dir, tmp_path, QUICK)
    assert results["holdout"] not in results["train_tiles"] and len(results["train_tiles"]) == 4
    pre = results["pretrain"]
    assert pre["last_loss"] < pre["first_loss"]
    assert results["tokenizers"]["LULC"]["last_loss"] < results["tokenizers"]["LULC"]["first_loss"]
    assert set(pre["holdout"]) == {"S2L2A", "S1RTC", "DEM", "LULC"}
    for r in pre["holdout"].values():
        assert math.isfinite(r["ce"]) and 0 <= r["accuracy"] <= 1 and math.isfinite(r["unigram_ce"])
    for r in results["tokenizers"].values():
        assert all(math.isfinite(v) for v in r.values())
    report = markdown(results)
    assert "| LULC | pixel accuracy |" in report and "unigram CE" in report


def test_proof_reads_a_terramesh_root_like_the_example_folder(examples_dir, terramesh_root):
    from terramind.train.proof import MODALITIES, load_tiles

    folder, mesh = load_tiles(examples_dir), load_tiles(terramesh_root, "majortom")
    assert len(mesh) == len(folder) == 5
    for a, b in zip(folder.values(), mesh.values(), strict=True):  # both in tile order
        for m in MODALITIES:
            np.testing.assert_array_equal(a.pixels[m], b.pixels[m])
