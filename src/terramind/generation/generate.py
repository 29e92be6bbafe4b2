"""Any-to-any generation: tokens of each output are decoded by the model, then detokenized.

:class:`Generator` composes a :class:`~terramind.model.TerraMind` with only the tokenizers it needs: those of
token-type inputs (LULC, NDVI, coordinates) and of the outputs. Outputs are generated in the given order; with
``chain=True`` each generated modality becomes an encoder input (as tokens) for the next one. The reference
wrapper (terratorch 1.2.11) does the same: it builds encoder embeddings for all outputs but the last and feeds
the generated tokens back (checked by counting encoder tokens: 196 for the first output, 392 for the second).
``chain=False`` makes every output depend on the given inputs only.

Randomness comes only from ``seed``: every sample gets its own generators derived from ``(seed, sample index,
purpose)``, so a sample's output does not depend on its batch, and a tiled scene (sample index = tile index)
does not depend on the tile batch size.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol, TypeVar, cast

import torch

from terramind.core.errors import InputError, ModalityError, ShapeError
from terramind.generation.strategies import decode_grid, decode_sequence, get_strategy
from terramind.layers.sampling import SamplingConfig, generators
from terramind.modalities import Kind, ModalitySpec, destandardize, get_modality, modality_names, standardize
from terramind.model import Encoded, TerraMind

SENTINEL_START = 5  # "[S_1]": opens a 4M span target (masking/sequence.py)
SENTINEL_STOP = 6  # "[S_2]": closes it
EOS = 3  # "[EOS]": ends an input sequence
PATCH = 16  # pixels per token side of every v1 image tokenizer
DEFAULT_GRID = (14, 14)  # token grid when no image input fixes the size (224 px)
PRECISIONS = {"fp32": None, "bf16": torch.bfloat16}


class ImageTokenizerLike(Protocol):
    """What generation needs of an image tokenizer."""

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Token ids (B, h, w) of a standardized image (LULC: class ids)."""
        ...

    def decode(
        self,
        ids: torch.Tensor,
        *,
        steps: int = 50,
        generator: torch.Generator | None = None,
        noise: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Standardized image (B, C, H, W) of ids (B, h, w) (LULC: class logits)."""
        ...


class SequenceTokenizerLike(Protocol):
    """What generation needs of the coordinate tokenizer."""

    def encode(self, lonlat: torch.Tensor) -> torch.Tensor:
        """Token ids (B, L) of ``[lon, lat]`` (B, 2)."""
        ...

    def decode(self, ids: torch.Tensor) -> torch.Tensor:
        """``[lon, lat]`` (B, 2) of ids (B, L)."""
        ...


Tokenizer = ImageTokenizerLike | SequenceTokenizerLike
TokenizerLoader = Callable[[], Tokenizer]
"""Builds (and fills) a tokenizer when it is needed; each call must give the same weights."""
_V = TypeVar("_V")


@dataclass(frozen=True)
class GenerationOptions:
    """Everything that steers one generation call (see :meth:`Generator.generate` for the meaning)."""

    steps: int = 1
    diffusion_steps: int = 10
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    strategy: str = "roar"
    temperature_schedule: str = "constant"
    guidance: float = 1.0
    chain: bool = True
    precision: str = "fp32"

    def __post_init__(self) -> None:
        get_strategy(self.strategy)
        if self.steps < 1:
            raise InputError(f"steps must be >= 1, got {self.steps}")
        if self.diffusion_steps < 1:
            raise InputError(f"diffusion_steps must be >= 1, got {self.diffusion_steps}")
        if self.precision not in PRECISIONS:
            raise InputError(f"precision must be one of {list(PRECISIONS)}, got {self.precision!r}")


def needed_tokenizers(inputs: Sequence[str], outputs: Sequence[str]) -> tuple[str, ...]:
    """Modalities whose tokenizer a generator needs: token-type and sequence inputs, and every output."""
    tokenized = (Kind.TOKEN, Kind.SEQUENCE)
    names = [get_modality(m).name for m in inputs if get_modality(m).input_kind in tokenized]
    names += [get_modality(m).name for m in outputs]
    return tuple(dict.fromkeys(names))


def check_modalities(
    inputs: Sequence[str], outputs: Sequence[str]
) -> tuple[list[ModalitySpec], list[ModalitySpec]]:
    """Resolve and validate the input and output modalities of a generator.

    Raises:
        ModalityError: No inputs or outputs, an output that cannot be generated, a modality that cannot be
            an input, an output that is also an input, or a repeated name.
    """
    ins, outs = [get_modality(m) for m in inputs], [get_modality(m) for m in outputs]
    if not ins or not outs:
        raise ModalityError("a generator needs at least one input and one output modality")
    generable = ", ".join(modality_names(generable=True))
    for spec in outs:
        if not spec.generable:
            raise ModalityError(f"{spec.name} cannot be generated; generable outputs are {generable}")
    for spec in ins:
        if spec.input_kind is None:
            raise ModalityError(f"{spec.name} cannot be an input of TerraMind v1")
    both = sorted({s.name for s in ins} & {s.name for s in outs})
    if both:
        raise ModalityError(f"{', '.join(both)} is both an input and an output: drop it from one of them")
    for group in (ins, outs):
        names = [s.name for s in group]
        if len(set(names)) != len(names):
            raise ModalityError(f"modality listed twice: {names}")
    return ins, outs


def prune_embeddings(model: TerraMind, inputs: Sequence[str], outputs: Sequence[str]) -> TerraMind:
    """Drop the embeddings a generator never uses (in place; returns the model).

    A released checkpoint holds 13 input and 7 output embeddings; the FSQ vocabularies make the unused ones
    hundreds of MB for base (15360 x 768 per table). Kept: the input embeddings of ``inputs``, the token
    input embeddings of ``outputs`` (chaining and iterative decoding feed them back) and the output
    embeddings of ``outputs``.
    """
    ins, outs = [get_modality(m) for m in inputs], [get_modality(m) for m in outputs]
    keep_enc = {s.pixel_key if s.input_kind is Kind.PIXEL else s.token_key for s in ins}
    keep_enc |= {s.token_key for s in outs}
    keep_dec = {s.token_key for s in outs}
    for key in [k for k in model.encoder_embeddings if k not in keep_enc]:
        del model.encoder_embeddings[key]
    for key in [k for k in model.decoder_embeddings if k not in keep_dec]:
        del model.decoder_embeddings[key]
    return model


class Generator:
    """Generate output modalities from input modalities with a TerraMind model and its tokenizers.

    Tokenizers are either resident or loaded on demand. Of those loaded on demand only the one used last is
    held, and it is let go before the next one loads: generating five diffusion outputs holds one
    200 M-parameter decoder at a time instead of all five, and a generator with one output loads its decoder
    once. :meth:`keep_loaded` makes them all resident, for many calls with several outputs (a scene).

    Args:
        model: The encoder-decoder (in eval mode; its device is used for everything).
        tokenizers: Resident tokenizers by canonical modality name; see :func:`needed_tokenizers`.
        inputs: Modalities that may be given.
        outputs: Modalities generated, in this order.
        loaders: Tokenizers loaded on demand, by canonical modality name.
    """

    def __init__(
        self,
        model: TerraMind,
        tokenizers: Mapping[str, Tokenizer],
        *,
        inputs: Sequence[str],
        outputs: Sequence[str],
        loaders: Mapping[str, TokenizerLoader] | None = None,
    ) -> None:
        self.inputs, self.outputs = check_modalities(inputs, outputs)
        self.tokenizers = dict(tokenizers)
        self.loaders = dict(loaders or {})
        missing = [m for m in needed_tokenizers(inputs, outputs) if m not in {*tokenizers, *self.loaders}]
        if missing:
            raise ModalityError(f"tokenizer(s) missing for {missing}")
        self.model = model.eval()
        self.last_seed: int | None = None
        self._held: tuple[str, Tokenizer] | None = None  # the on-demand tokenizer used last

    @property
    def device(self) -> torch.device:
        """Device of the model."""
        return next(self.model.parameters()).device

    def to(self, device: torch.device | str) -> Generator:
        """Move the model and the image tokenizers to ``device``; returns self."""
        self._held = None  # reloaded onto the new device when next needed
        self.model.to(device)
        for tokenizer in self.tokenizers.values():
            if isinstance(tokenizer, torch.nn.Module):
                tokenizer.to(device)
        return self

    def keep_loaded(self) -> Generator:
        """Load every on-demand tokenizer now and keep it resident (for many calls); returns self."""
        held, self._held = self._held, None
        for name in self.loaders:
            if name not in self.tokenizers:
                self.tokenizers[name] = held[1] if held and held[0] == name else self._load(name)
        return self

    # ----------------------------------------------------------------------------------------- public
    @torch.inference_mode()
    def generate(
        self,
        inputs: Mapping[str, torch.Tensor],
        *,
        seed: int | None = None,
        steps: int = 1,
        diffusion_steps: int = 10,
        temperature: float = 1.0,
        top_p: float = 0.8,
        top_k: int = 0,
        chain: bool = True,
        standardize: bool = True,
        offset: Mapping[str, float | Sequence[float]] | None = None,
        return_logits: bool = False,
        strategy: str = "roar",
        temperature_schedule: str = "constant",
        guidance: float = 1.0,
        precision: str = "fp32",
        sample_indices: Sequence[int] | None = None,
        noise: Mapping[str, torch.Tensor] | None = None,
    ) -> dict[str, torch.Tensor]:
        """Generate every output modality.

        Args:
            inputs: By modality name: images (B, C, H, W) in physical units (standardized when
                ``standardize=False``), LULC class ids (B, H, W) or (B, 1, H, W), coords (B, 2) as
                ``[lon, lat]``.
            seed: Seed of all randomness; None draws a fresh one (stored in ``last_seed``).
            steps: Decoding steps per image output (1 = every token in one pass).
            diffusion_steps: DDIM steps of the diffusion decoders.
            temperature: Sampling temperature; 0 is greedy.
            top_p: Nucleus filter on the unscaled logits (0 = off).
            top_k: Top-k filter on the unscaled logits (0 = off).
            chain: Feed each generated output to the encoder for the following outputs.
            standardize: Inputs and outputs in physical units (the catalog's statistics are applied).
            offset: Per modality, a value added to the mean (S2 products with the +1000 DN offset).
            return_logits: Also return ``"<MOD>_logits"`` for categorical outputs (LULC, (B, 10, H, W)).
            strategy: ``"roar"``, ``"maskgit"`` or ``"single"`` (the reference's one-pass decoding).
            temperature_schedule: ``"constant"``, ``"linear"`` or ``"onex:<min_t>:<power>"``.
            guidance: Classifier-free guidance scale (1 = off); the unconditional pass drops the inputs.
            precision: ``"fp32"`` or ``"bf16"`` (autocast for model and tokenizer decoders).
            sample_indices: Index of each sample for seeding (default 0..B-1); tiling passes tile indices.
            noise: Per output, explicit initial diffusion noise (B, C, H, W) instead of seeded noise.

        Returns:
            By modality name: images (B, C, H, W) float32 (physical units when ``standardize``), LULC class
            ids (B, 1, H, W) long, coords (B, 2) ``[lon, lat]``.
        """
        opts = GenerationOptions(
            steps, diffusion_steps, SamplingConfig(temperature, top_k, top_p), strategy,
            temperature_schedule, guidance, chain, precision,
        )  # fmt: skip
        shifts = _canonical(offset)
        seed = self._seed(seed)
        batch = self._prepare(inputs, standardize, shifts)
        indices = self._indices(sample_indices, batch.size)
        tokens = self._generate_tokens(batch, opts, seed, indices)
        return self.decode(
            tokens, batch.grid, opts, seed, indices,
            standardize=standardize, offset=shifts, return_logits=return_logits, noise=_canonical(noise),
        )  # fmt: skip

    @torch.inference_mode()
    def generate_tokens(
        self,
        inputs: Mapping[str, torch.Tensor],
        options: GenerationOptions | None = None,
        *,
        seed: int | None = None,
        standardize: bool = True,
        offset: Mapping[str, float | Sequence[float]] | None = None,
        sample_indices: Sequence[int] | None = None,
    ) -> dict[str, torch.Tensor]:
        """Only the token stage: ids by output name (images (B, h, w), coords (B, n)).

        Args:
            inputs: As for :meth:`generate`.
            options: Decoding options (default: :class:`GenerationOptions` defaults).
            seed: As for :meth:`generate`.
            standardize: As for :meth:`generate`.
            offset: As for :meth:`generate`.
            sample_indices: As for :meth:`generate`.
        """
        seed = self._seed(seed)
        batch = self._prepare(inputs, standardize, _canonical(offset))
        indices = self._indices(sample_indices, batch.size)
        return self._generate_tokens(batch, options or GenerationOptions(), seed, indices)

    def decode(
        self,
        tokens: Mapping[str, torch.Tensor],
        grid: tuple[int, int],
        opts: GenerationOptions,
        seed: int,
        indices: Sequence[int],
        *,
        standardize: bool = True,
        offset: Mapping[str, float | Sequence[float]] | None = None,
        return_logits: bool = False,
        noise: Mapping[str, torch.Tensor] | None = None,
    ) -> dict[str, torch.Tensor]:
        """Detokenize generated ids into outputs (see :meth:`generate` for the returned layout)."""
        out: dict[str, torch.Tensor] = {}
        for spec in self.outputs:
            ids = tokens[spec.name]
            if not spec.is_image:
                out[spec.name] = self._sequence_tokenizer(spec.name).decode(_strip_span(ids))
                continue
            values = self._decode_image(spec, ids, grid, opts, seed, indices, (noise or {}).get(spec.name))
            if spec.classes is not None:
                out[spec.name] = values.argmax(1, keepdim=True)
                if return_logits:
                    out[f"{spec.name}_logits"] = values
            else:
                shift = (offset or {}).get(spec.name, 0.0)
                out[spec.name] = destandardize(spec, values, offset=shift) if standardize else values
        return out

    # ---------------------------------------------------------------------------------------- inputs
    def _seed(self, seed: int | None) -> int:
        self.last_seed = random.SystemRandom().randrange(2**62) if seed is None else int(seed)
        return self.last_seed

    @staticmethod
    def _indices(indices: Sequence[int] | None, size: int) -> list[int]:
        chosen = list(range(size)) if indices is None else [int(i) for i in indices]
        if len(chosen) != size:
            raise InputError(f"sample_indices has {len(chosen)} entries for a batch of {size}")
        return chosen

    def _prepare(
        self, inputs: Mapping[str, torch.Tensor], standardize: bool, offset: Mapping[str, object]
    ) -> _Conditioning:
        """Validate, standardize and tokenize the inputs into encoder inputs keyed by official keys."""
        given = {get_modality(k).name: v for k, v in inputs.items()}
        allowed = {s.name: s for s in self.inputs}
        unknown = sorted(set(given) - set(allowed))
        if unknown or not given:
            raise ModalityError(
                f"inputs {unknown or '(none)'} not accepted; this generator takes {', '.join(allowed)}"
            )
        unknown_offsets = sorted(set(offset) - set(given) - {s.name for s in self.outputs})
        if unknown_offsets:
            raise ModalityError(f"offset given for {unknown_offsets}: neither an input nor an output")
        sizes = {name: _batch_and_size(allowed[name], x) for name, x in given.items()}
        _check_agreement(sizes)
        cond = _Conditioning(size=next(iter(sizes.values()))[0], grid=_grid(sizes))
        for name, x in given.items():
            self._add_input(cond, allowed[name], x.to(self.device), standardize, offset.get(name, 0.0))
        return cond

    def _add_input(
        self, cond: _Conditioning, spec: ModalitySpec, x: torch.Tensor, std: bool, shift: object
    ) -> None:
        if x.is_floating_point() and not bool(torch.isfinite(x).all()):
            raise InputError(f"{spec.name} input contains NaN or infinite values: fill or mask them first")
        if spec.input_kind is Kind.SEQUENCE:
            ids = self._sequence_tokenizer(spec.name).encode(x).to(self.device)
            cond.add(spec.token_key, ids, _until_eos(ids))
            return
        if spec.classes is not None:  # class ids are not standardized
            cond.add(spec.token_key, self._image_tokenizer(spec.name).encode(x.float()).to(self.device))
            return
        x = standardize(spec, x.float(), offset=shift) if std else x.float()  # type: ignore[arg-type]
        if spec.input_kind is Kind.TOKEN:
            cond.add(spec.token_key, self._image_tokenizer(spec.name).encode(x).to(self.device))
        else:
            cond.add(spec.pixel_key, x)

    # ---------------------------------------------------------------------------------------- tokens
    def _generate_tokens(
        self, cond: _Conditioning, opts: GenerationOptions, seed: int, indices: Sequence[int]
    ) -> dict[str, torch.Tensor]:
        cond = cond.copy()
        out: dict[str, torch.Tensor] = {}
        with self._autocast(opts.precision):
            for spec in self.outputs:
                gens = generators(seed, indices, f"tokens/{spec.name}")
                if spec.is_image:
                    ids = self._image_tokens(cond, spec, opts, gens)
                    out[spec.name] = ids
                    if opts.chain:
                        cond.add(spec.token_key, ids)
                else:
                    seq = self._sequence_tokens(cond, spec, opts, gens)
                    out[spec.name] = seq
                    if opts.chain:
                        ids = _as_input_sequence(seq)
                        cond.add(spec.token_key, ids, _until_eos(ids))
        return out

    def _image_tokens(
        self, cond: _Conditioning, spec: ModalitySpec, opts: GenerationOptions, gens: list[torch.Generator]
    ) -> torch.Tensor:
        key = _key(spec.token_key)
        h, w = cond.grid

        def logits_fn(ids: torch.Tensor, known: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
            inputs, masks = cond.with_target(key, ids, known)
            encoded = self.model.encode(inputs, masks or None)
            logits = self.model.decode_logits(encoded, key, positions, (h, w))
            return self._guided(logits, cond, key, ids, known, positions, opts.guidance)

        ids = decode_grid(
            logits_fn, get_strategy(opts.strategy), batch=cond.size, total=h * w, steps=opts.steps,
            sampling=opts.sampling, gens=gens, temperature_kind=opts.temperature_schedule, device=self.device,
        )  # fmt: skip
        return ids.reshape(cond.size, h, w)

    def _guided(
        self,
        logits: torch.Tensor,
        cond: _Conditioning,
        key: str,
        ids: torch.Tensor,
        known: torch.Tensor,
        positions: torch.Tensor,
        scale: float,
    ) -> torch.Tensor:
        """Classifier-free guidance: ``uncond + scale * (cond - uncond)``, uncond = conditioning emptied.

        The unconditional pass keeps only the target's own decided tokens; on a step where there are none
        it would have no encoder input at all, so that step is unguided.
        """
        if scale == 1.0 or not bool(known.any()):
            return logits
        empty = _Conditioning(size=cond.size, grid=cond.grid)
        inputs, masks = empty.with_target(key, ids, known)
        uncond = self.model.decode_logits(self.model.encode(inputs, masks), key, positions, cond.grid)
        return uncond + scale * (logits - uncond)

    def _sequence_tokens(
        self, cond: _Conditioning, spec: ModalitySpec, opts: GenerationOptions, gens: list[torch.Generator]
    ) -> torch.Tensor:
        key = _key(spec.token_key)
        encoded: Encoded = self.model.encode(cond.inputs, cond.masks or None)
        return decode_sequence(
            lambda ids: self.model.decode_sequence_logits(encoded, key, ids),
            start=SENTINEL_START, stop=SENTINEL_STOP, max_tokens=spec.max_length or 1,
            sampling=opts.sampling, gens=gens, device=self.device,
        )  # fmt: skip

    # ---------------------------------------------------------------------------------------- decode
    def _decode_image(
        self,
        spec: ModalitySpec,
        ids: torch.Tensor,
        grid: tuple[int, int],
        opts: GenerationOptions,
        seed: int,
        indices: Sequence[int],
        noise: torch.Tensor | None,
    ) -> torch.Tensor:
        tokenizer = self._image_tokenizer(spec.name)
        if noise is None and spec.classes is None:
            shape = (1, spec.num_bands, grid[0] * PATCH, grid[1] * PATCH)
            gens = generators(seed, indices, f"noise/{spec.name}")
            noise = torch.cat([torch.randn(shape, generator=g) for g in gens])
        with self._autocast(opts.precision):
            values = tokenizer.decode(ids, steps=opts.diffusion_steps, noise=noise)
        return values.float()

    @contextlib.contextmanager
    def _autocast(self, precision: str) -> Iterator[None]:
        dtype = PRECISIONS[precision]
        if dtype is None:
            yield
            return
        with torch.autocast(self.device.type, dtype=dtype):
            yield

    def _image_tokenizer(self, name: str) -> ImageTokenizerLike:
        return cast(ImageTokenizerLike, self._tokenizer(name))

    def _sequence_tokenizer(self, name: str) -> SequenceTokenizerLike:
        return cast(SequenceTokenizerLike, self._tokenizer(name))

    def _tokenizer(self, name: str) -> Tokenizer:
        """Return the resident or held tokenizer, or load it (letting the held one go first)."""
        if name in self.tokenizers:
            return self.tokenizers[name]
        if self._held is None or self._held[0] != name:
            self._held = None  # freed now, before the next one takes its memory
            self._held = (name, self._load(name))
        return self._held[1]

    def _load(self, name: str) -> Tokenizer:
        tokenizer = self.loaders[name]()
        if isinstance(tokenizer, torch.nn.Module):
            tokenizer.to(self.device).eval()
        return tokenizer


@dataclass
class _Conditioning:
    """Encoder inputs by official key, with optional per-token input masks, and the batch geometry."""

    size: int
    grid: tuple[int, int]
    inputs: dict[str, torch.Tensor] = field(default_factory=dict)
    masks: dict[str, torch.Tensor] = field(default_factory=dict)

    def add(self, key: str | None, value: torch.Tensor, mask: torch.Tensor | None = None) -> None:
        self.inputs[_key(key)] = value
        if mask is not None:
            self.masks[_key(key)] = mask

    def copy(self) -> _Conditioning:
        return _Conditioning(self.size, self.grid, dict(self.inputs), dict(self.masks))

    def with_target(
        self, key: str, ids: torch.Tensor, known: torch.Tensor
    ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """Return the inputs plus the target's decided tokens (4M feeds them to the encoder)."""
        inputs, masks = dict(self.inputs), dict(self.masks)
        if bool(known.any()):
            inputs[key], masks[key] = ids, known
        return inputs, masks


def _key(key: str | None) -> str:
    if key is None:
        raise ModalityError("modality has no official key for this use")
    return key


def _canonical(values: Mapping[str, _V] | None) -> dict[str, _V]:
    """Re-key a per-modality mapping by canonical modality names."""
    return {get_modality(k).name: v for k, v in (values or {}).items()}


def _batch_and_size(spec: ModalitySpec, x: torch.Tensor) -> tuple[int, tuple[int, int] | None]:
    """Batch size and image size (None for coordinates) of one input, checking its layout."""
    if not isinstance(x, torch.Tensor):
        raise InputError(f"{spec.name} input must be a torch.Tensor, got {type(x).__name__}")
    if not spec.is_image:
        if x.ndim != 2 or x.shape[1] != 2:
            raise ShapeError(f"{spec.name} input must be (B, 2) [lon, lat], got {tuple(x.shape)}")
        return x.shape[0], None
    if spec.classes is not None and x.ndim == 3:
        return x.shape[0], (x.shape[1], x.shape[2])
    if x.ndim != 4 or x.shape[1] != spec.num_bands:
        raise ShapeError(
            f"{spec.name} input must be (B, {spec.num_bands}, H, W) with bands {', '.join(spec.bands)}; "
            f"got {tuple(x.shape)}"
        )
    return x.shape[0], (x.shape[2], x.shape[3])


def _check_agreement(sizes: Mapping[str, tuple[int, tuple[int, int] | None]]) -> None:
    batches = {name: b for name, (b, _) in sizes.items()}
    if len(set(batches.values())) > 1:
        raise ShapeError(f"inputs have different batch sizes: {batches}")
    images = {name: s for name, (_, s) in sizes.items() if s is not None}
    if len(set(images.values())) > 1:
        raise ShapeError(f"image inputs have different sizes: {images}; crop or resample them to one grid")
    for name, (h, w) in images.items():
        if h % PATCH or w % PATCH:
            raise ShapeError(f"{name}: height and width must be multiples of {PATCH} px, got {h}x{w}")


def _grid(sizes: Mapping[str, tuple[int, tuple[int, int] | None]]) -> tuple[int, int]:
    images = [s for _, s in sizes.values() if s is not None]
    return (images[0][0] // PATCH, images[0][1] // PATCH) if images else DEFAULT_GRID


def _until_eos(ids: torch.Tensor) -> torch.Tensor:
    """(B, L) input mask of a sequence: every token up to and including the first [EOS]."""
    is_eos = ids == EOS
    first = torch.where(is_eos.any(1), is_eos.int().argmax(1), torch.full_like(ids[:, 0], ids.shape[1] - 1))
    return torch.arange(ids.shape[1], device=ids.device)[None] <= first[:, None]


def _strip_span(seq: torch.Tensor) -> torch.Tensor:
    """Cut generated span ids (B, n) at the closing sentinel; the rest becomes [PAD]=0."""
    stop = (seq == SENTINEL_STOP).cumsum(1) > 0
    return torch.where(stop, torch.zeros_like(seq), seq)


def _as_input_sequence(seq: torch.Tensor) -> torch.Tensor:
    """Turn a generated span into an encoder input: its content followed by [EOS]."""
    content = _strip_span(seq)
    ids = torch.cat([content, torch.zeros_like(content[:, :1])], 1)
    length = (content != 0).sum(1)
    return ids.scatter(1, length[:, None], EOS)
