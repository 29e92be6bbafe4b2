import numpy as np
import pytest
import torch

import terramind
from terramind.modalities import (
    LULC_CLASSES,
    MODALITIES,
    Kind,
    destandardize,
    get_modality,
    modality_names,
    standardize,
    stats,
)

# The official v1 pretraining statistics, typed in again on purpose: the test must fail if the catalog
# drifts from the release.
OFFICIAL_V1 = {
    "S2L2A": (
        [1390.458, 1503.317, 1718.197, 1853.91, 2199.1, 2779.975, 2987.011, 3083.234, 3132.22, 3162.988,
         2424.884, 1857.648],
        [2106.761, 2141.107, 2038.973, 2134.138, 2085.321, 1889.926, 1820.257, 1871.918, 1753.829, 1797.379,
         1434.261, 1334.311],
    ),
    "S2L1C": (
        [2357.089, 2137.385, 2018.788, 2082.986, 2295.651, 2854.537, 3122.849, 3040.56, 3306.481, 1473.847,
         506.07, 2472.825, 1838.929],
        [1624.683, 1675.806, 1557.708, 1833.702, 1823.738, 1733.977, 1732.131, 1679.732, 1727.26, 1024.687,
         442.165, 1331.411, 1160.419],
    ),
    "S2RGB": ([87.271, 80.931, 66.667], [58.767, 47.663, 42.631]),
    "S1GRD": ([-12.599, -20.293], [5.195, 5.890]),
    "S1RTC": ([-10.93, -17.329], [4.391, 4.459]),
    "DEM": ([670.665], [951.272]),
    "LULC": ([0.0], [1.0]),
    "NDVI": ([0.327], [0.322]),
}  # fmt: skip


@pytest.mark.parametrize("name", list(MODALITIES))
def test_band_count_matches_stats(name):
    spec = MODALITIES[name]
    assert len(spec.bands) == len(spec.mean) == len(spec.std)
    if spec.mean_v01 is not None:
        assert len(spec.mean_v01) == len(spec.std_v01) == len(spec.bands)
    assert all(s > 0 for s in spec.std)


@pytest.mark.parametrize("name", list(OFFICIAL_V1))
def test_stats_equal_official_tables(name):
    mean, std = OFFICIAL_V1[name]
    assert get_modality(name).mean == pytest.approx(mean, abs=0)
    assert get_modality(name).std == pytest.approx(std, abs=0)


def test_v01_tables():
    assert get_modality("DEM").mean_v01 == (435.726,)
    assert get_modality("S2L2A").std_v01[-1] == 1365.080
    assert get_modality("NDVI").mean_v01 is None


def test_official_keys_and_vocab():
    assert get_modality("S2L2A").pixel_key == "untok_sen2l2a@224"
    assert get_modality("S2L2A").token_key == "tok_sen2l2a@224"
    assert get_modality("LULC").vocab_size == 4375 == int(np.prod(get_modality("LULC").fsq_levels))
    for name in ("S2L2A", "S1GRD", "S1RTC", "DEM", "NDVI"):
        spec = get_modality(name)
        assert spec.vocab_size == int(np.prod(spec.fsq_levels)) == 15360
        assert spec.tokenizer == f"terramind_v1_tokenizer_{name.lower()}"


def test_band_orders():
    l2a, l1c = get_modality("S2L2A").bands, get_modality("S2L1C").bands
    assert l1c.index("CIRRUS") == l1c.index("WATER_VAPOR") + 1 == 10
    assert [b for b in l1c if b != "CIRRUS"] == list(l2a)
    assert get_modality("S2RGB").bands == ("RED", "GREEN", "BLUE")


def test_kinds_and_generable():
    assert modality_names(generable=True) == ("S2L2A", "S1GRD", "S1RTC", "DEM", "LULC", "NDVI", "coords")
    assert get_modality("LULC").input_kind is Kind.TOKEN
    assert get_modality("coords").input_kind is Kind.SEQUENCE
    assert not get_modality("coords").is_image and get_modality("NDVI").is_image


def test_lulc_classes():
    assert [c.id for c in LULC_CLASSES] == list(range(10))
    assert LULC_CLASSES[1].name == "water" and LULC_CLASSES[7].name == "snow/ice"
    assert all(c.colour.startswith("#") and len(c.colour) == 7 for c in LULC_CLASSES)


@pytest.mark.parametrize(
    ("alias", "name"),
    [("S2L2A", "S2L2A"), ("s2l2a", "S2L2A"), ("sen2l2a", "S2L2A"), ("untok_sen2l2a@224", "S2L2A"),
     ("TOK_SEN2L2A@224", "S2L2A"), ("S1", "S1GRD"), ("s2_l1c", "S2L1C"), ("RGB", "S2RGB"),
     ("tok_lulc@224", "LULC"), ("Coordinates", "coords"), ("text", "caption"), ("S1RTC", "S1RTC")],
)  # fmt: skip
def test_alias_resolution(alias, name):
    assert get_modality(alias).name == name


def test_unknown_name_lists_valid_and_closest():
    with pytest.raises(terramind.ModalityError) as err:
        get_modality("S2L2B")
    msg = str(err.value)
    assert "Did you mean 'S2L2A'" in msg and "S1RTC" in msg and "NDVI" in msg


def test_standardize_roundtrip_and_purity():
    x = torch.rand(2, 12, 8, 8) * 5000
    before = get_modality("S2L2A").mean
    z = standardize("S2L2A", x, offset=1000)
    assert get_modality("S2L2A").mean == before  # tables untouched by the offset
    # fp32 round trip of values < 6000: a few ulps (4.9e-4 each); 1e-2 is 1/100 of a digital number
    assert torch.allclose(destandardize("S2L2A", z, offset=1000), x, rtol=1e-5, atol=1e-2)
    mean = torch.tensor(before).reshape(12, 1, 1)
    std = torch.tensor(get_modality("S2L2A").std).reshape(12, 1, 1)
    assert torch.allclose(z, (x - mean - 1000) / std, atol=1e-5)  # |z| <= 3: ops in another order, ~4 ulps
    # a model built after an offset call must still see plain statistics
    assert torch.allclose(standardize("S2L2A", x), (x - mean) / std, atol=1e-5)


def test_standardize_numpy_int_and_band_subset():
    x = np.full((3, 4, 4), 1390, dtype=np.int16)
    z = standardize("S2L2A", x, bands=["COASTAL_AEROSOL", "RED", "BLUE"])
    assert z.dtype == np.float32
    # the fp32 mean 1390.458 is off by <= 6e-5 (half an ulp at 1390): 3e-8 in z after dividing by 2106.761
    assert z[0].max() == pytest.approx((1390 - 1390.458) / 2106.761, abs=1e-7)
    assert z[1, 0, 0] == pytest.approx((1390 - 1853.91) / 2134.138, rel=1e-6)  # 3 fp32 roundings: 2e-7
    mean, _ = stats("S2L2A", bands=["red"])
    assert mean.tolist() == [1853.91]


def test_standardize_wrong_band_count():
    with pytest.raises(terramind.ShapeError, match="12 bands"):
        standardize("S2L2A", torch.zeros(1, 3, 4, 4))


def test_unknown_band_and_missing_version():
    with pytest.raises(terramind.ModalityError, match="no band"):
        stats("S1GRD", bands=["HH"])
    with pytest.raises(terramind.ModalityError, match=r"v0\.1"):
        stats("NDVI", version="v0.1")
    with pytest.raises(terramind.ModalityError, match="text"):
        stats("caption")
