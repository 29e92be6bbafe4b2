import json

from huggingface_hub import constants

from terramind.cli.info import collect
from terramind.cli.main import main
from terramind.modalities import MODALITIES


def test_info_text_lists_modalities_sizes_and_cache(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    for name in MODALITIES:
        assert f"\n{name} " in out
    assert "ibm-esa-geospatial/TerraMind-1.0-Tokenizer-S1RTC" in out
    assert "ibm-esa-geospatial/TerraMind-1.0-large / TerraMind_v1_large.pt" in out
    assert "COASTAL_AEROSOL BLUE GREEN RED" in out
    assert str(constants.HF_HUB_CACHE) in out


def test_info_json(capsys):
    assert main(["info", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    sizes = {
        m["name"]: (m["dim"], m["encoder_depth"], m["decoder_depth"], m["heads"]) for m in info["models"]
    }
    assert sizes == {
        "tiny": (192, 12, 4, 3),
        "small": (384, 12, 6, 6),
        "base": (768, 12, 12, 12),
        "large": (1024, 24, 24, 16),
    }
    mods = {m["name"]: m for m in info["modalities"]}
    assert mods["S2L1C"]["tokenizer_repo"] is None and not mods["S2L1C"]["generable"]
    assert mods["LULC"]["tokenizer_file"] == "TerraMind_Tokenizer_LULC.pt"
    assert mods["S2RGB"]["bands"] == ["RED", "GREEN", "BLUE"]
    params = {m["name"]: round(m["params_m"], 2) for m in info["models"]}
    assert params == {"tiny": 52.06, "small": 124.26, "base": 376.09, "large": 942.1}  # the released sizes


def test_info_sees_cached_weights(tmp_path, monkeypatch):
    repo = tmp_path / "models--ibm-esa-geospatial--TerraMind-1.0-tiny"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("abc123")
    (repo / "snapshots" / "abc123").mkdir(parents=True)
    (repo / "snapshots" / "abc123" / "TerraMind_v1_tiny.pt").write_bytes(b"weights")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    info = collect()
    assert info["weights"]["cache"] == str(tmp_path)
    assert {m["name"]: m["cached"] for m in info["models"]} == {
        "tiny": True,
        "small": False,
        "base": False,
        "large": False,
    }
