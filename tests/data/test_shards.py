import itertools
import shutil

import numpy as np
import pytest
import rasterio
import torch
from webdataset import TarWriter

from terramind.core.errors import InputError
from terramind.data.shards import ShardSource, read_samples, shard_stream, write_shards
from terramind.data.stream import StreamConfig


def fake_tokenize(x: np.ndarray) -> np.ndarray:
    """Patch-local fake tokenizer: ids depend only on their own 16x16 patch."""
    c, h, w = x.shape
    patches = x.astype(np.float64).reshape(c, h // 16, 16, w // 16, 16).mean(axis=(0, 2, 4))
    return (np.abs(patches) * 7).astype(np.int64) % 15360


@pytest.fixture(scope="module")
def src(examples_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("src")
    for mod in ("S2L2A", "DEM", "LULC"):
        shutil.copytree(examples_dir / mod, root / mod)
    return root


@pytest.fixture(scope="module")
def shards(src, tmp_path_factory):
    out = tmp_path_factory.mktemp("shards")
    return write_shards(src, out, shard_size=2, tokenizers={"DEM": fake_tokenize})


def test_write_shards_content(src, shards):
    assert [p.name for p in shards] == ["shard-000000.tar", "shard-000001.tar", "shard-000002.tar"]
    samples = [s for p in shards for s in read_samples(p)]
    assert [s.key for s in samples] == sorted(p.stem for p in (src / "DEM").glob("*.tif"))
    first = samples[0]
    with rasterio.open(src / "S2L2A" / f"{first.key}.tif") as f:
        np.testing.assert_array_equal(first.pixels["S2L2A"], f.read())
        assert first.crs == f.crs.to_string()
    assert first.pixels["LULC"].dtype == np.uint8 and first.pixels["S2L2A"].shape == (12, 224, 224)
    assert first.tokens["DEM"].dtype == np.uint16 and first.tokens["DEM"].shape == (14, 14)
    np.testing.assert_array_equal(first.tokens["DEM"], fake_tokenize(first.pixels["DEM"]))
    lon, lat = first.center_lonlat  # 282D_485L_3_3: about (-48.11, -25.32) (examples/)
    assert abs(lon + 48.11) < 0.02 and abs(lat + 25.32) < 0.02


def config(**kw):
    base = dict(
        modalities=("S2L2A", "DEM"),
        token_modalities=("DEM",),
        batch_size=2,
        crop=64,
        shuffle_buffer=3,
        seed=0,
    )
    return StreamConfig(**{**base, **kw})


def stream(shards, *, rank=0, world_size=1, skip_batches=0, **kw):
    return shard_stream(shards, config(**kw), rank=rank, world_size=world_size, skip_batches=skip_batches)


def same(x, y):
    """Two batches hold the same keys, pixels and tokens."""
    return (
        x.keys == y.keys
        and all(torch.equal(x.pixels[k], y.pixels[k]) for k in x.pixels)
        and all(torch.equal(x.tokens[k], y.tokens[k]) for k in x.tokens)
    )


def take(stream, n):
    return list(itertools.islice(iter(stream), n))


def test_stream_is_seeded_and_tokens_align_with_pixels(shards):
    a, b = take(stream(shards), 4), take(stream(shards), 4)
    c = take(stream(shards, seed=1), 4)
    assert a[0].pixels["S2L2A"].shape == (2, 12, 64, 64) and a[0].tokens["DEM"].shape == (2, 4, 4)
    for x, y in zip(a, b, strict=True):
        assert same(x, y)
    assert not all(torch.equal(x.pixels["S2L2A"], y.pixels["S2L2A"]) for x, y in zip(a, c, strict=True))
    for batch in a:  # crops sit on the 16 px grid: the cropped tokens are the crop's own tokens
        for i in range(2):
            np.testing.assert_array_equal(
                batch.tokens["DEM"][i].numpy(), fake_tokenize(batch.pixels["DEM"][i].numpy())
            )


def test_skip_batches_resumes_exactly(shards):
    full = take(stream(shards), 5)
    resumed = take(stream(shards, skip_batches=3), 2)
    for x, y in zip(full[3:], resumed, strict=True):
        assert same(x, y)


def test_ranks_read_disjoint_shares(shards):
    keys = []
    for rank in range(2):
        reader = stream(shards, rank=rank, world_size=2)
        keys.append([key for key, _ in reader.share(0, *reader.split())])
    assert not set(keys[0]) & set(keys[1]) and len(keys[0]) + len(keys[1]) == 5
    many = stream(shards, rank=1, world_size=4)  # more readers than shards: split samples
    assert len(list(many.share(0, *many.split()))) in (1, 2)


def test_bad_samples_are_skipped_then_fail(shards, tmp_path):
    good = next(read_samples(shards[0]))
    s2, dem, tok = good.pixels["S2L2A"], good.pixels["DEM"], good.tokens["DEM"]
    bad = tmp_path / "bad.tar"
    with TarWriter(str(bad)) as sink:
        sink.write({"__key__": "nodem", "s2l2a.npy": s2, "tok_dem.npy": tok})
        sink.write({"__key__": "short", "s2l2a.npy": s2[:3], "dem.npy": dem, "tok_dem.npy": tok})
    lenient = stream([*shards, bad], min_samples_for_check=1000)
    take(lenient, 6)
    assert lenient.counter.skipped >= 2 and any("missing modality DEM" in r for r in lenient.counter.reasons)
    strict = stream([*shards, bad], min_samples_for_check=3, max_skip_fraction=0.1)
    with pytest.raises(InputError, match="samples skipped"):
        take(strict, 50)
    only_bad = stream([bad], min_samples_for_check=1000)
    with pytest.raises(InputError, match="no usable sample"):
        take(only_bad, 1)


def test_bad_sources(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        write_shards(tmp_path / "nope", tmp_path / "out")
    (tmp_path / "NOTAMODALITY").mkdir()
    with pytest.raises(InputError, match="not a modality name"):
        write_shards(tmp_path, tmp_path / "out")
    with pytest.raises(InputError, match="prepare"):
        ShardSource(())


def test_skip_batches_with_workers(shards):
    from torch.utils.data import DataLoader

    def batches(skip, n):
        loader = DataLoader(stream(shards, skip_batches=skip), batch_size=None, num_workers=2)
        return list(itertools.islice(iter(loader), n))

    full, resumed = batches(0, 5), batches(3, 2)
    for x, y in zip(full[3:], resumed, strict=True):
        assert same(x, y)
    assert not torch.equal(
        full[0].pixels["S2L2A"], full[1].pixels["S2L2A"]
    )  # the two workers read different shares
