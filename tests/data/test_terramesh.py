"""TerraMesh reader: a tiny synthetic shard in the release layout, read back."""

from __future__ import annotations

import io
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest

from terramind.core.errors import InputError
from terramind.data.terramesh import decode_zarr_zip, iter_terramesh, terramesh_stream

zarr = pytest.importorskip("zarr")

SIZE = 32
SHARD = "majortom_shard_000001.tar"
TIME_NS = 1_600_000_000 * 10**9  # 2020-09-13T12:26:40Z


def zarr_zip(
    tmp: Path, bands: np.ndarray, time_ns: int, lonlat: tuple[float, float], time_units: str | None = None
) -> bytes:
    """Write one sample as the release does: a zarr v2 group, consolidated, zipped."""
    store = tmp / "sample.zarr"
    group = zarr.open_group(zarr.storage.LocalStore(store), mode="w", zarr_format=2)
    group.create_array("bands", data=bands[np.newaxis])  # (time=1, C, H, W)
    time = group.create_array("time", data=np.array([time_ns], dtype=np.int64))
    if time_units is not None:
        time.attrs["units"] = time_units
    group.create_array("center_lon", data=np.array([lonlat[0]]))
    group.create_array("center_lat", data=np.array([lonlat[1]]))
    zarr.consolidate_metadata(zarr.storage.LocalStore(store), zarr_format=2)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for path in sorted(p for p in store.rglob("*") if p.is_file()):
            archive.write(path, path.relative_to(store).as_posix())
    for path in sorted(store.rglob("*"), reverse=True):
        path.unlink() if path.is_file() else path.rmdir()
    store.rmdir()
    return out.getvalue()


def write_tar(path: Path, members: dict[str, bytes]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def pixels(key: int, bands: int) -> np.ndarray:
    """Distinct values per sample, band and pixel, so crops can be located."""
    return (np.arange(bands * SIZE * SIZE, dtype=np.int16).reshape(bands, SIZE, SIZE) + 1000 * key).astype(
        np.int16
    )


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """train/{S1RTC,DEM}/majortom_shard_000001.tar with 3 aligned samples (DEM has no timestamp)."""
    base = tmp_path_factory.mktemp("terramesh")
    for folder, bands, time_ns in (("S1RTC", 2, TIME_NS), ("DEM", 1, 0)):
        members = {
            f"majortom_train_{k:07d}.zarr.zip": zarr_zip(base, pixels(k, bands), time_ns, (10.0 + k, 50.0))
            for k in range(3)
        }
        write_tar(base / "train" / folder / SHARD, members)
    return base


def test_decode_reads_bands_time_and_centre(root: Path) -> None:
    sample = decode_zarr_zip(zarr_zip(root, pixels(1, 2), TIME_NS, (1.5, -2.5)))
    np.testing.assert_array_equal(sample.bands, pixels(1, 2))
    assert sample.time == "2020-09-13T12:26:40+00:00"
    assert sample.center_lonlat == (1.5, -2.5)


def test_decode_reads_cf_time_units(root: Path) -> None:
    sample = decode_zarr_zip(zarr_zip(root, pixels(0, 1), 10, (0, 0), time_units="days since 2020-01-01"))
    assert sample.time == "2020-01-11T00:00:00+00:00"


def test_full_samples_match_written_values(root: Path) -> None:
    samples = list(
        iter_terramesh(root, "train", ["S1RTC", "dem"], subset="majortom", crop=None, shuffle=False)
    )
    assert [s.key for s in samples] == [f"majortom_train_{k:07d}" for k in range(3)]
    for k, sample in enumerate(samples):
        np.testing.assert_array_equal(sample.pixels["S1RTC"], pixels(k, 2))
        np.testing.assert_array_equal(sample.pixels["DEM"], pixels(k, 1))
        assert sample.time == {"S1RTC": "2020-09-13T12:26:40+00:00"}  # DEM's 0 means "no time"
        np.testing.assert_allclose(sample.center_lonlat, [10.0 + k, 50.0])


def test_crops_share_one_window_and_are_seeded(root: Path) -> None:
    def run(seed: int) -> list:
        return list(iter_terramesh(root, "train", ["S1RTC", "DEM"], crop=16, seed=seed, shuffle=True))

    first, again, other = run(3), run(3), run(4)
    for sample in first:
        k = int(sample.key[-1])
        assert sample.pixels["S1RTC"].shape == (2, 16, 16) and sample.pixels["DEM"].shape == (1, 16, 16)
        top, left = divmod(int(sample.pixels["DEM"][0, 0, 0]) - 1000 * k, SIZE)
        np.testing.assert_array_equal(
            sample.pixels["S1RTC"], pixels(k, 2)[:, top : top + 16, left : left + 16]
        )
    assert sorted(s.key for s in first) == [f"majortom_train_{k:07d}" for k in range(3)]
    for a, b in zip(first, again, strict=True):
        assert a.key == b.key
        np.testing.assert_array_equal(a.pixels["S1RTC"], b.pixels["S1RTC"])
    assert any(
        not np.array_equal(a.pixels["S1RTC"], b.pixels["S1RTC"])
        for a, b in zip(sorted(first, key=lambda s: s.key), sorted(other, key=lambda s: s.key), strict=True)
    )


def test_ranks_split_samples_without_overlap(root: Path) -> None:
    keys = [
        {s.key for s in iter_terramesh(root, "train", ["DEM"], crop=16, rank=r, world_size=2)} for r in (0, 1)
    ]
    assert not keys[0] & keys[1] and len(keys[0] | keys[1]) == 3


def test_dataloader_workers_read_disjoint_shares(root: Path) -> None:
    from torch.utils.data import DataLoader

    dataset = terramesh_stream(root, "train", ["S1RTC", "DEM"], crop=16, shuffle=False)
    batches = list(DataLoader(dataset, batch_size=None, num_workers=2))
    assert sorted(b.key for b in batches) == [f"majortom_train_{k:07d}" for k in range(3)]
    assert tuple(batches[0].pixels["S1RTC"].shape) == (2, 16, 16)


def test_bad_samples_are_skipped_and_counted(tmp_path: Path) -> None:
    good = {
        f"majortom_train_{k:07d}.zarr.zip": zarr_zip(tmp_path, pixels(k, 2), TIME_NS, (0, 0))
        for k in range(3)
    }
    dem = {
        "majortom_train_0000000.zarr.zip": zarr_zip(tmp_path, pixels(0, 1), 0, (0, 0)),
        "majortom_train_0000001.zarr.zip": zarr_zip(tmp_path, pixels(1, 2), 0, (0, 0)),  # 2 bands: wrong
        # sample 2 has no DEM at all
    }
    good["majortom_train_0000003.zarr.zip"] = b"not a zip"
    dem["majortom_train_0000003.zarr.zip"] = dem["majortom_train_0000000.zarr.zip"]
    write_tar(tmp_path / "train" / "S1RTC" / SHARD, good)
    write_tar(tmp_path / "train" / "DEM" / SHARD, dem)
    dataset = terramesh_stream(tmp_path, "train", ["S1RTC", "DEM"], crop=16, min_samples_for_check=10)
    assert [s.key for s in dataset] == ["majortom_train_0000000"]
    assert (dataset.counter.seen, dataset.counter.skipped) == (4, 3)
    assert any("unreadable zarr zip" in r for r in dataset.counter.reasons)
    assert any("missing modality DEM" in r for r in dataset.counter.reasons)
    assert any("DEM has shape (2, 32, 32)" in r for r in dataset.counter.reasons)

    strict = terramesh_stream(
        tmp_path, "train", ["S1RTC", "DEM"], crop=16, max_skip_fraction=0.2, min_samples_for_check=1
    )
    with pytest.raises(InputError, match="samples skipped"):
        list(strict)


def test_missing_folder_and_wrong_subset_raise(root: Path) -> None:
    with pytest.raises(InputError, match=r"S2L2A.*does not exist"):
        terramesh_stream(root, "train", ["S1RTC", "S2L2A"])
    with pytest.raises(InputError, match="only in"):
        terramesh_stream(root, "train", ["S1RTC"], subset="ssl4eos12")
    with pytest.raises(InputError, match="missing"):
        terramesh_stream(root, "train", ["DEM"], shards=["majortom_shard_000002"])
