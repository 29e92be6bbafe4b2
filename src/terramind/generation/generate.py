"""Any-to-any generation: tokens of each output are decoded by the model, then detokenized.

:class:`Generator` composes a :class:`~terramind.model.TerraMind` with only the tokenizers it needs: those of
token-type inputs (LULC, NDVI, coordinates) and of the outputs. Outputs are generated in the given order; with
``chain=True`` each generated modality becomes an encoder input (as tokens) for the next one. The reference
wrapper (terratorch 1.2.11) does the same: it builds encoder embeddings for all outputs but the last and feeds
the generated tokens back (checked by counting encoder tokens: 196 for the first output, 392 for the second).
``chain=False`` makes every output depend on the given inputs only.

How tokens are decoded travels as one :class:`~terramind.generation.options.GenerationOptions` record;
:meth:`Generator.generate_tokens` and :meth:`Generator.decode` split a call into its token stage and its
detokenizing stage (the returned :class:`GeneratedTokens` carries the seed and sample indices across).

Randomness comes only from ``seed``: every sample gets its own generators derived from ``(seed, sample index,
purpose)``, so a sample's output does not depend on its batch, and a tiled scene (sample index = tile index)
does not depend on the tile batch size.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypeVar, cast

import torch

from terramind.build.precision import autocast
from terramind.core.errors import InputError, ModalityError, ShapeError
from terramind.generation.options import AUTO_COMPILE_AFTER, GenerationOptions
from terramind.generation.strategies import decode_grid, decode_sequence, get_strategy
from terramind.layers.sampling import fresh_seed, generators
from terramind.modalities import Kind, ModalitySpec, destandardize, get_modality, modality_names, standardize
from terramind.modalities.tokens import EOS_ID, SENTINEL_BASE_ID
from terramind.modalities.tokens import PATCH_SIZE as PATCH  # pixels per token side
from terramind.model import Encoded, TerraMind
from terramind.tokenizers.base import ImageTokenizerLike, SequenceTokenizerLike, Tokenizer, TokenizerLoader

SENTINEL_START = SENTINEL_BASE_ID + 1  # "[S_1]": opens a 4M span target (masking/sequence.py)
SENTINEL_STOP = SENTINEL_BASE_ID + 2  # "[S_2]": closes it
EOS = EOS_ID  # "[EOS]": ends an input sequence

DEFAULT_GRID = (14, 14)  # token grid when no image input fixes the size (224 px)
_V = TypeVar("_V")


@dataclass(frozen=True, eq=False)
class GeneratedTokens(Mapping[str, torch.Tensor]):
    """The token stage of a generation: ids by output name, and what decoding them needs.

    Reads as a mapping of ids (images (B, h, w), coords (B, n)); :meth:`Generator.decode` turns it into
    outputs, with the same seed and sample indices, so tokens and decoder noise match a one-call
    :meth:`Generator.generate`.

    Attributes:
        ids: Token ids by canonical output name.
        grid: Token grid (h, w) of the image outputs.
        seed: The seed that was used (drawn when none was given).
        sample_indices: Index of each sample for seeding.
    """

    ids: dict[str, torch.Tensor]
    grid: tuple[int, int]
    seed: int
    sample_indices: tuple[int, ...]

    def __getitem__(self, name: str) -> torch.Tensor:
        return self.ids[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.ids)

    def __len__(self) -> int:
        return len(self.ids)


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
        self._decodes: Counter[tuple[object, ...]] = Counter()  # decoder runs by (output, shape, precision)

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
        options: GenerationOptions | None = None,
        *,
        seed: int | None = None,
        standardize: bool = True,
        offset: Mapping[str, float | Sequence[float]] | None = None,
        return_logits: bool = False,
        sample_indices: Sequence[int] | None = None,
        noise: Mapping[str, torch.Tensor] | None = None,
    ) -> dict[str, torch.Tensor]:
        """Generate every output modality.

        Example::

            out = gen.generate({"S2L2A": s2}, GenerationOptions(steps=4, temperature=0.8), seed=0)

        Args:
            inputs: By modality name: images (B, C, H, W) in physical units (standardized when
                ``standardize=False``), LULC class ids (B, H, W) or (B, 1, H, W), coords (B, 2) as
                ``[lon, lat]``.
            options: How to decode (default: :class:`GenerationOptions` defaults).
            seed: Seed of all randomness; None draws a fresh one (stored in ``last_seed``).
            standardize: Inputs and outputs in physical units (the catalog's statistics are applied).
            offset: Per modality, a value added to the mean (S2 products with the +1000 DN offset).
            return_logits: Also return ``"<MOD>_logits"`` for categorical outputs (LULC, (B, 10, H, W)).
            sample_indices: Index of each sample for seeding (default 0..B-1); tiling passes tile indices.
            noise: Per output, explicit initial diffusion noise (B, C, H, W) instead of seeded noise.

        Returns:
            By modality name: images (B, C, H, W) float32 (physical units when ``standardize``), LULC class
            ids (B, 1, H, W) long, coords (B, 2) ``[lon, lat]``.
        """
        opts = _options(options)
        tokens = self.generate_tokens(
            inputs, opts, seed=seed, standardize=standardize, offset=offset, sample_indices=sample_indices
        )
        return self.decode(
            tokens, opts, standardize=standardize, offset=offset, return_logits=return_logits, noise=noise
        )

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
    ) -> GeneratedTokens:
        """Only the token stage; :meth:`decode` finishes it (arguments as for :meth:`generate`)."""
        opts = _options(options)
        seed = self._seed(seed)
        batch = self._prepare(inputs, standardize, _canonical(offset))
        indices = self._indices(sample_indices, batch.size)
        ids = self._generate_tokens(batch, opts, seed, indices)
        return GeneratedTokens(ids, batch.grid, seed, tuple(indices))

    @torch.inference_mode()
    def decode(
        self,
        tokens: GeneratedTokens,
        options: GenerationOptions | None = None,
        *,
        standardize: bool = True,
        offset: Mapping[str, float | Sequence[float]] | None = None,
        return_logits: bool = False,
        noise: Mapping[str, torch.Tensor] | None = None,
    ) -> dict[str, torch.Tensor]:
        """Detokenize the ids of :meth:`generate_tokens` (with the options' diffusion_steps and precision).

        Arguments and the returned layout are as for :meth:`generate`.
        """
        opts, shifts, noises = _options(options), _canonical(offset), _canonical(noise)
        out: dict[str, torch.Tensor] = {}
        for spec in self.outputs:
            ids = tokens[spec.name]
            if not spec.is_image:
                out[spec.name] = self._sequence_tokenizer(spec.name).decode(_strip_span(ids))
                continue
            values = self._decode_image(spec, ids, tokens, opts, noises.get(spec.name))
            if spec.classes is not None:
                out[spec.name] = values.argmax(1, keepdim=True)
                if return_logits:
                    out[f"{spec.name}_logits"] = values
            else:
                shift = shifts.get(spec.name, 0.0)
                out[spec.name] = destandardize(spec, values, offset=shift) if standardize else values
        return out

    # ---------------------------------------------------------------------------------------- inputs
    def _seed(self, seed: int | None) -> int:
        self.last_seed = fresh_seed() if seed is None else int(seed)
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
            sampling=opts.sampling, gens=gens, schedule=opts.temperature_schedule, device=self.device,
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
        tokens: GeneratedTokens,
        opts: GenerationOptions,
        noise: torch.Tensor | None,
    ) -> torch.Tensor:
        tokenizer = self._image_tokenizer(spec.name)
        if noise is None and spec.classes is None:
            shape = (1, spec.num_bands, tokens.grid[0] * PATCH, tokens.grid[1] * PATCH)
            gens = generators(tokens.seed, tokens.sample_indices, f"noise/{spec.name}")
            noise = torch.cat([torch.randn(shape, generator=g) for g in gens])
        with self._autocast(opts.precision):
            compiled = self._compile_now(spec, ids, opts)
            values = tokenizer.decode(ids, steps=opts.diffusion_steps, noise=noise, compile=compiled)
        return values.float()

    def _compile_now(self, spec: ModalitySpec, ids: torch.Tensor, opts: GenerationOptions) -> bool:
        """Whether this decode runs compiled: as asked, or under "auto" once its shape ran often enough."""
        device = self.device.type
        dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else None
        key = (spec.name, tuple(ids.shape), dtype)
        runs, self._decodes[key] = self._decodes[key], self._decodes[key] + 1
        if opts.compile != "auto":
            return bool(opts.compile)
        after = AUTO_COMPILE_AFTER.get(self.device.type)
        return spec.classes is None and after is not None and runs >= after

    @contextlib.contextmanager
    def _autocast(self, precision: str) -> Iterator[None]:
        with autocast(precision, self.device):
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


def _options(options: GenerationOptions | None) -> GenerationOptions:
    if options is None:
        return GenerationOptions()
    if not isinstance(options, GenerationOptions):
        raise InputError(
            f"options must be a GenerationOptions, got {type(options).__name__}; "
            "GenerationOptions.from_mapping builds one from a dict"
        )
    return options


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
