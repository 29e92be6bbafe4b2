"""One stream engine for every training source: split, shard order, shuffle, crops, batches, resume, skips.

Sources only decode (:class:`Source`: ``units`` to split, cheap ``items`` per unit, ``decode`` of one item);
:class:`SampleStream` does everything else, once:

- **split**: reader ``rank * workers + worker`` of ``world_size * workers`` takes every n-th unit (shard) of
  the epoch's seeded order, or every n-th item when there are fewer units than readers;
- **shuffle**: a seeded buffer per reader; **crops**: one seeded window per sample shared by all its
  modalities, on the 16 px token grid whenever token ids are read, so ids and pixels stay aligned;
- **batches** of ``batch_size`` (:class:`~terramind.data.sample.Batch`), or single samples;
- **exact resume**: the stream is a pure function of (seed, rank, world size, workers), so its state is the
  number of batches a rank consumed (:meth:`SampleStream.state_dict`); a resumed stream skips them;
- **skip accounting**: a sample is skipped only when its source raises its declared
  :class:`SourceDecodeError` or when it lacks a requested modality or has the wrong shape. Anything else
  (a bug in a decoder, a disk error) propagates. The :class:`SkipCounter` summary (count, first keys,
  reasons) is logged at the end of every epoch and travels on every batch (``Batch.skips``) so trainers can
  put it in their checkpoints; past ``max_skip_fraction`` the stream stops with an :class:`InputError`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Generic, Protocol, TypeVar

import numpy as np
from torch.utils.data import IterableDataset, get_worker_info

from terramind.core.errors import InputError
from terramind.data.sample import Batch, Sample, collate
from terramind.modalities import PATCH_SIZE, get_modality

log = logging.getLogger(__name__)

T = TypeVar("T")
# Skipped keys and reasons kept for the summary (the count is exact; the lists are the first ones).
REPORTED = 10


class SourceDecodeError(InputError):
    """A source could not decode one sample (a corrupt member): the stream skips and counts it."""


class Source(Protocol):
    """What a stream needs from a source: units to split among readers, and decoding of one item."""

    def units(self) -> Sequence[str]:
        """Names of the units (shards, tiles) in a fixed order."""
        ...

    def items(self, unit: int) -> Iterator[tuple[str, Any]]:
        """``(sample key, raw item)`` of unit ``unit``, cheaply (no decoding)."""
        ...

    def decode(self, key: str, raw: Any) -> Sample:
        """Decode one item; raise :class:`SourceDecodeError` for an unreadable one."""
        ...

    def file_of(self, unit: int, modality: str) -> str:
        """Return the file that holds ``modality`` of unit ``unit`` (for error messages)."""
        ...


@dataclass(frozen=True)
class StreamConfig:
    """What a stream delivers and how.

    Attributes:
        modalities: Pixel modalities every sample must have (canonical names).
        token_modalities: Modalities whose stored token grids every sample must have.
        batch_size: Samples per yielded :class:`Batch`; None yields single :class:`Sample` objects.
        crop: Side of the random square crop in pixels (multiple of 16); None keeps whole samples.
        shuffle: Shuffle the unit order per epoch and the samples through a buffer.
        shuffle_buffer: Samples held for shuffling per reader.
        seed: Seed of unit order, buffer and crops.
        epochs: Passes over the data; None: endless (the consumer decides how many batches to take).
        max_skip_fraction: Fail once more than this fraction of the samples seen so far was skipped.
        min_samples_for_check: Samples to see before the skip fraction is enforced.
        channels: Band counts of modalities not in the catalog (new sensors).
    """

    modalities: tuple[str, ...] = ()
    token_modalities: tuple[str, ...] = ()
    batch_size: int | None = 8
    crop: int | None = 224
    shuffle: bool = True
    shuffle_buffer: int = 64
    seed: int = 0
    epochs: int | None = None
    max_skip_fraction: float = 0.1
    min_samples_for_check: int = 20
    channels: Mapping[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.crop is not None and (self.crop < PATCH_SIZE or self.crop % PATCH_SIZE):
            raise InputError(f"crop must be a positive multiple of {PATCH_SIZE}, got {self.crop}")
        if (self.batch_size is not None and self.batch_size < 1) or self.shuffle_buffer < 1:
            raise InputError("batch_size and shuffle_buffer must be >= 1")
        if not self.modalities and not self.token_modalities:
            raise InputError("a stream needs at least one pixel or token modality to read")

    def bands(self, name: str) -> int:
        """Band count a modality's pixels must have."""
        return self.channels[name] if name in self.channels else get_modality(name).num_bands


@dataclass
class SkipCounter:
    """Samples seen and skipped by one reader: the count, the first keys and reasons."""

    seen: int = 0
    skipped: int = 0
    first_keys: list[str] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)

    def skip(self, key: str, reason: str, config: StreamConfig) -> None:
        """Count a skipped sample; raise when more than ``max_skip_fraction`` of those seen were skipped."""
        self.skipped += 1
        if len(self.first_keys) < REPORTED:
            self.first_keys.append(key)
            self.reasons.append(reason)
        log.debug("skipping sample %s (%d of %d skipped)", reason, self.skipped, self.seen)
        if self.seen >= config.min_samples_for_check and self.skipped > config.max_skip_fraction * self.seen:
            raise InputError(
                f"{self.skipped} of {self.seen} samples skipped (more than {config.max_skip_fraction:.0%}), "
                f"e.g. {'; '.join(self.reasons[:3])}; check the data (missing modalities, wrong shapes, "
                f"corrupt files)"
            )

    def summary(self) -> dict[str, object]:
        """Plain-data record: ``seen``, ``skipped``, ``first_keys``, ``reasons`` (checkpoint and logs)."""
        return {
            "seen": self.seen,
            "skipped": self.skipped,
            "first_keys": list(self.first_keys),
            "reasons": list(self.reasons),
        }


def check_sample(sample: Sample, config: StreamConfig) -> str | None:
    """Why a decoded sample cannot be used (a missing modality, a wrong shape), or None."""
    size: tuple[int, ...] | None = None
    need = config.crop or 1
    for name in config.modalities:
        array = sample.pixels.get(name)
        if array is None:
            return f"{sample.key}: missing modality {name}"
        bands = config.bands(name)
        if array.ndim != 3 or array.shape[0] != bands or min(array.shape[1:]) < need:
            return f"{sample.key}: {name} has shape {array.shape}, expected ({bands}, >={need}, >={need})"
        if size is not None and array.shape[1:] != size:
            return f"{sample.key}: {name} size {array.shape[1:]} differs from {size}"
        size = array.shape[1:]
    for name in config.token_modalities:
        ids = sample.tokens.get(name)
        if ids is None:
            return f"{sample.key}: missing tokens of {name}"
        grid = None if size is None else (size[0] // PATCH_SIZE, size[1] // PATCH_SIZE)
        if ids.ndim != 2 or (grid is not None and ids.shape != grid) or min(ids.shape) * PATCH_SIZE < need:
            return f"{sample.key}: tokens of {name} have shape {ids.shape}, pixels {size}"
    return None


def crop_sample(sample: Sample, config: StreamConfig, rng: np.random.Generator) -> Sample:
    """Crop the requested modalities of a checked sample cropped with one seeded window.

    The window sits on the 16 px token grid whenever token ids are read; the transform follows the crop.
    """
    height, width = sample.size() or (0, 0)
    side_h, side_w = (height, width) if config.crop is None else (config.crop, config.crop)
    step = PATCH_SIZE if config.token_modalities else 1
    top = int(rng.integers(0, (height - side_h) // step + 1)) * step
    left = int(rng.integers(0, (width - side_w) // step + 1)) * step
    rows, cols = slice(top, top + side_h), slice(left, left + side_w)
    grid_rows = slice(top // PATCH_SIZE, (top + side_h) // PATCH_SIZE)
    grid_cols = slice(left // PATCH_SIZE, (left + side_w) // PATCH_SIZE)
    transform = sample.transform
    if transform is not None:
        a, b, c, d, e, f = transform[:6]
        transform = (a, b, c + left * a + top * b, d, e, f + left * d + top * e)
    return replace(
        sample,
        pixels={m: np.ascontiguousarray(sample.pixels[m][:, rows, cols]) for m in config.modalities},
        tokens={
            m: np.ascontiguousarray(sample.tokens[m][grid_rows, grid_cols]) for m in config.token_modalities
        },
        transform=transform,
    )


class SampleStream(IterableDataset[T], Generic[T]):
    """Seeded stream of samples or batches from one source (see the module docstring).

    Use with ``DataLoader(stream, batch_size=None, num_workers=W)``. Batches arrive round-robin from the
    workers, so the batch order of a rank is a pure function of the seed, the world size and ``W``.
    """

    def __init__(
        self,
        source: Source,
        config: StreamConfig,
        *,
        rank: int = 0,
        world_size: int = 1,
        skip_batches: int = 0,
        transform: Callable[[Batch, int], T] | None = None,
    ):
        """Create the stream.

        Args:
            source: Where the samples come from (decoding only).
            config: What to deliver.
            rank: This process's rank.
            world_size: Number of ranks.
            skip_batches: Batches this rank already consumed (exact resume; see :meth:`load_state_dict`).
            transform: Applied in the worker to each batch with its index in this rank's batch sequence
                (e.g. drawing the step's masks off the training loop); None: batches as made.
        """
        self.source, self.config = source, config
        self.rank, self.world_size = rank, world_size
        self.skip_batches = skip_batches
        self.transform = transform
        self.counter = SkipCounter()

    def state_dict(self) -> dict[str, int]:
        """Return this rank's position: batches consumed, with the seed and world size it depends on."""
        return {"batches": self.skip_batches, "seed": self.config.seed, "world_size": self.world_size}

    def load_state_dict(self, state: Mapping[str, int]) -> None:
        """Continue after the batches a previous run of the same stream consumed.

        Raises:
            InputError: The state belongs to a stream with another seed or world size.
        """
        mine = self.state_dict()
        if any(state.get(k, mine[k]) != mine[k] for k in ("seed", "world_size")):
            raise InputError(
                f"stream state {dict(state)} is from another seed or world size than this run ({mine}); "
                f"resume with the original settings"
            )
        self.skip_batches = int(state["batches"])

    def _role(self) -> tuple[int, int]:
        """(role, workers): which worker's share this worker reads.

        The DataLoader hands out batches round-robin starting at worker 0. After ``skip_batches`` batches
        the next one belongs to worker ``skip_batches % workers`` of the original run, so on resume worker
        ``i`` takes the role of worker ``(i + skip_batches) % workers``: the batch order continues exactly.
        """
        info = get_worker_info()
        workers, worker = (1, 0) if info is None else (info.num_workers, info.id)
        return (worker + self.skip_batches) % workers, workers

    def split(self) -> tuple[int, int]:
        """(reader, readers) of this process and worker."""
        role, workers = self._role()
        return self.rank * workers + role, self.world_size * workers

    def share(self, epoch: int, split: int, splits: int) -> Iterator[tuple[str, Any]]:
        """Yield this reader's ``(key, raw item)`` pairs of one epoch, undecoded."""
        count = len(self.source.units())
        order = np.arange(count)
        if self.config.shuffle:
            order = np.random.default_rng((self.config.seed, epoch)).permutation(count)
        by_unit = count >= splits
        index = 0
        for unit in order[split::splits] if by_unit else order:
            for item in self.source.items(int(unit)):
                if by_unit or index % splits == split:
                    yield item
                index += 1

    def check_first(self) -> None:
        """Decode and check the first sample of the first unit, so a wrong layout fails before any step.

        Raises:
            InputError: One line naming the file and the modality (field) that is wrong.
        """
        units = self.source.units()
        for key, raw in self.source.items(0):
            try:
                sample = self.source.decode(key, raw)
            except SourceDecodeError as err:
                raise InputError(f"{units[0]}: sample {key} is unreadable: {err}") from err
            if (reason := check_sample(sample, self.config)) is not None:
                modality = next(
                    (m for m in (*self.config.modalities, *self.config.token_modalities) if m in reason), ""
                )
                where = self.source.file_of(0, modality) if modality else units[0]
                raise InputError(f"{where}: {reason}")
            return
        raise InputError(f"{units[0]} holds no samples")

    def _usable(self, key: str, raw: Any) -> Sample | None:
        """Decode and check one item; a declared decode error or a failed check is counted and skipped."""
        self.counter.seen += 1
        try:
            sample = self.source.decode(key, raw)
        except SourceDecodeError as err:
            self.counter.skip(key, f"{key}: unreadable ({err})", self.config)
            return None
        if (reason := check_sample(sample, self.config)) is not None:
            self.counter.skip(key, reason, self.config)
            return None
        return sample

    def samples(self, split: int, splits: int) -> Iterator[Sample]:
        """Usable crops of this reader's share, epoch after epoch, through the shuffle buffer."""
        rng = np.random.default_rng((self.config.seed, split, splits))
        buffer: list[Sample] = []
        size = self.config.shuffle_buffer if self.config.shuffle else 1
        epochs = range(2**62) if self.config.epochs is None else range(self.config.epochs)
        for epoch in epochs:
            delivered = 0
            for key, raw in self.share(epoch, split, splits):
                if (sample := self._usable(key, raw)) is None:
                    continue
                delivered += 1
                buffer.append(crop_sample(sample, self.config, rng))
                if len(buffer) >= size:
                    yield buffer.pop(int(rng.integers(len(buffer))))
            log.info("reader %d/%d finished epoch %d: %s", split, splits, epoch, self.counter.summary())
            if delivered == 0 and self.config.epochs is None:
                raise InputError(
                    f"reader {split} of {splits} found no usable sample in {len(self.source.units())} "
                    f"units: {self.counter.reasons or 'too few samples for the number of ranks x workers'}"
                )
        while buffer:
            yield buffer.pop(int(rng.integers(len(buffer))))

    def __iter__(self) -> Iterator[T]:
        """Yield samples (``batch_size`` None) or batches, skipping those a resumed run already consumed."""
        split, splits = self.split()
        role, workers = self._role()
        to_skip = len(range(role, self.skip_batches, workers))  # batch j of the rank came from role j % W
        items: Iterator[Any] = self.samples(split, splits)
        if self.config.batch_size is not None:
            items = self._batched(items)
        for made, item in enumerate(items):
            if to_skip > 0:
                to_skip -= 1
                continue
            if self.transform is None or not isinstance(item, Batch):
                yield item
            else:  # this worker's batch number ``made`` is batch ``role + made * workers`` of the rank
                yield self.transform(item, role + made * workers)

    def _batched(self, samples: Iterator[Sample]) -> Iterator[Batch]:
        """Stack consecutive samples into batches of ``batch_size`` (a last partial one is dropped)."""
        group: list[Sample] = []
        for sample in samples:
            group.append(sample)
            if len(group) == self.config.batch_size:
                batch = collate(group)
                batch.skips = self.counter.summary()
                yield batch
                group = []
