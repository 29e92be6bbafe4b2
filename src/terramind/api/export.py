"""Export for deployment: the backbone, a tokenizer encoder or a diffusion decoder step (ONNX, torch.export).

:func:`export` builds the part (random or given weights), traces it on an example input of the requested
tile size and batch, writes the file atomically and, before publishing it, checks it numerically against the
eager module on the same input: through onnxruntime for ONNX, through the loaded program for torch.export.
Every float output must agree within :data:`MAX_RELATIVE_ERROR` of its largest magnitude (fp32; the
exporters only re-associate arithmetic, so the difference is rounding: ~1e-6 measured). The check also times
both (median of a few calls), which is what :class:`ExportReport` reports.

What each part takes and returns (the file's input and output names):

- ``backbone``: ``image`` (B, C, T, T) standardized -> ``features`` (blocks, B, N, D), every block's output;
- ``tokenizer-encoder``: ``image`` (B, C, T, T) standardized -> ``codes`` (B, 5, T/16, T/16) in [0, 1] and
  ``ids`` (B, T/16, T/16) int64 (the FSQ token ids);
- ``decoder-step``: ``x_t`` (B, C, T, T), ``t`` (1,) int64 timestep, ``codes`` (B, 5, T/16, T/16) ->
  ``x0`` (B, C, T, T), the UNet's prediction; a DDIM loop around it is ``tokenizers/diffusion.py``.

ONNX needs the ``export`` extra (onnx, onnxscript, onnxruntime).
"""

from __future__ import annotations

import contextlib
import logging
import statistics
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, cast, get_args

import torch
from torch import Tensor, nn

from terramind.api.models import create_backbone
from terramind.api.tokenizers import create_tokenizer
from terramind.build import Weights
from terramind.core.errors import InputError, OutputError
from terramind.core.files import atomic_path
from terramind.core.optional import require
from terramind.modalities import get_modality
from terramind.tokenizers import DiVAETokenizer, ImageTokenizer

Part = Literal["backbone", "tokenizer-encoder", "decoder-step"]
Format = Literal["onnx", "torch-export"]
PARTS: tuple[str, ...] = get_args(Part)
FORMATS: tuple[str, ...] = get_args(Format)
SUFFIXES = {"onnx": ".onnx", "torch-export": ".pt2"}
MAX_RELATIVE_ERROR = 1e-4
DEFAULT_MODALITY = {"backbone": "S2L2A", "tokenizer-encoder": "S2L2A", "decoder-step": "S1RTC"}


@dataclass(frozen=True)
class ExportReport:
    """What was written and how it compares with eager.

    Attributes:
        path: The written file.
        size_bytes: Its size.
        relative_errors: Per float output, ``max|exported - eager| / max|eager|``.
        eager_ms: Median milliseconds of one eager call.
        exported_ms: Median milliseconds of one call of the exported file (onnxruntime or the program).
    """

    path: Path
    size_bytes: int
    relative_errors: dict[str, float]
    eager_ms: float
    exported_ms: float


class BackbonePart(nn.Module):
    """The backbone on one image modality, every block's features stacked (export needs one tensor)."""

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone

    def forward(self, image: Tensor) -> Tensor:
        """``(B, C, T, T)`` -> ``(blocks, B, N, D)``."""
        return torch.stack(self.backbone(image))


class EncoderPart(nn.Module):
    """A tokenizer's ViT encoder and FSQ quantiser, without the input checks (they are data-dependent)."""

    def __init__(self, tokenizer: ImageTokenizer) -> None:
        super().__init__()
        if tokenizer.encoder is None:
            raise InputError(f"the {tokenizer.modality} tokenizer was built without its encoder")
        self.encoder, self.quant_proj, self.quantize = (
            tokenizer.encoder,
            tokenizer.quant_proj,
            tokenizer.quantize,
        )

    def forward(self, image: Tensor) -> tuple[Tensor, Tensor]:
        """``(B, C, T, T)`` -> codes ``(B, 5, h, w)``, ids ``(B, h, w)``."""
        return self.quantize.quantize(self.quant_proj(self.encoder(image)))


class DecoderStepPart(nn.Module):
    """One call of a diffusion decoder's UNet: ``(x_t, t, codes) -> x0``."""

    def __init__(self, tokenizer: DiVAETokenizer) -> None:
        super().__init__()
        self.unet = tokenizer.decoder

    def forward(self, x_t: Tensor, t: Tensor, codes: Tensor) -> Tensor:
        """Predict the clean image."""
        return self.unet(x_t, t, codes)


@dataclass(frozen=True)
class Built:
    """A part ready to trace: the module, example inputs and the names of inputs and outputs."""

    module: nn.Module
    inputs: tuple[Tensor, ...]
    input_names: tuple[str, ...]
    output_names: tuple[str, ...]


def build_part(part: str, model: str, weights: Weights, modality: str | None, tile: int, batch: int) -> Built:
    """Build the module of ``part`` in eval mode with seeded example inputs.

    Raises:
        InputError: An unknown part, or a tile size the part cannot take.
        ModalityError: A modality the part does not have (e.g. a decoder step of LULC).
    """
    if part not in PARTS:
        raise InputError(f"unknown export part {part!r}; choose one of {', '.join(PARTS)}")
    spec = get_modality(modality or DEFAULT_MODALITY[part])
    if part != "backbone" and spec.decoder_kind not in ("diffusion", "vit"):
        raise InputError(f"{spec.name} has no image tokenizer to export")
    if part == "decoder-step" and spec.decoder_kind != "diffusion":
        raise InputError(f"{spec.name} has no diffusion decoder: decoder steps exist for DiVAE tokenizers")
    gen = torch.Generator().manual_seed(0)
    image = torch.randn(batch, spec.num_bands, tile, tile, generator=gen)
    if part == "backbone":
        _check_tile(tile, 16)
        backbone = create_backbone(model, [spec.name], weights=weights)
        return Built(BackbonePart(backbone).eval(), (image,), ("image",), ("features",))
    tokenizer = create_tokenizer(spec.name, weights=weights, decode_only=part == "decoder-step")
    if part == "tokenizer-encoder":
        _check_tile(tile, tokenizer.patch_size)
        inputs = (tokenizer.prepare(image),)  # class maps one-hot encoded, as the tokenizer does
        return Built(EncoderPart(tokenizer).eval(), inputs, ("image",), ("codes", "ids"))
    _check_tile(tile, tokenizer.side_multiple)
    codes = torch.rand(batch, len(tokenizer.cfg.levels), tile // 16, tile // 16, generator=gen)
    step = DecoderStepPart(cast(DiVAETokenizer, tokenizer)).eval()  # the catalog's decoder kind said so
    return Built(step, (image, torch.tensor([999]), codes), ("x_t", "t", "codes"), ("x0",))


def _check_tile(tile: int, multiple: int) -> None:
    if tile <= 0 or tile % multiple:
        raise InputError(f"tile size must be a positive multiple of {multiple} px for this part, got {tile}")


def export(
    part: str,
    fmt: str,
    output: str | Path,
    *,
    model: str = "terramind_v1_base",
    weights: Weights = None,
    modality: str | None = None,
    tile: int = 224,
    batch: int = 1,
    overwrite: bool = True,
    repeats: int = 5,
) -> ExportReport:
    """Export one part to ONNX or torch.export, checked against eager before the file is published.

    Args:
        part: ``"backbone"``, ``"tokenizer-encoder"`` or ``"decoder-step"``.
        fmt: ``"onnx"`` or ``"torch-export"``.
        output: The file to write (``.onnx`` / ``.pt2``).
        model: Model size, for the backbone.
        weights: As for :func:`~terramind.api.create_backbone` / :func:`~terramind.api.create_tokenizer`.
        modality: The backbone's input or the tokenizer's modality (default S2L2A; S1RTC for a decoder step).
        tile: Side of the example tile in pixels (the exported shapes are fixed to it).
        batch: Batch of the example input (fixed too).
        overwrite: Replace an existing file.
        repeats: Timed calls of each of eager and exported (after one warm-up each).

    Raises:
        InputError: An unknown part or format, or a bad tile size or file suffix.
        OutputError: The file cannot be written, or the exported part disagrees with eager.
        TerraMindError: ONNX without the ``export`` extra.
    """
    if fmt not in FORMATS:
        raise InputError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if Path(output).suffix != SUFFIXES[fmt]:
        raise InputError(f"a {fmt} file should end in {SUFFIXES[fmt]}, got {str(output)!r}")
    run_exported = _onnx_runner if fmt == "onnx" else _program_runner
    if fmt == "onnx":
        require("onnxscript", "export"), require("onnxruntime", "export")
    built = build_part(part, model, weights, modality, tile, batch)
    with torch.inference_mode():
        expected = _as_tuple(built.module(*built.inputs))
    eager_ms = _median_ms(lambda: built.module(*built.inputs), repeats)
    found: dict[str, Any] = {}

    def verify(tmp: Path) -> None:
        runner = run_exported(tmp, built)
        found["errors"] = _compare(built.output_names, runner(), expected)
        found["ms"] = _median_ms(runner, repeats)

    with atomic_path(output, overwrite=overwrite, verify=verify) as tmp:
        _write(fmt, built, tmp)
    path = Path(output)
    return ExportReport(path, path.stat().st_size, found["errors"], eager_ms, found["ms"])


def _write(fmt: str, built: Built, path: Path) -> None:
    """Trace ``built.module`` and write it to ``path``."""
    with torch.no_grad():
        if fmt == "torch-export":
            program = torch.export.export(built.module, built.inputs)
            torch.export.save(program, path)
            return
        with _quiet_exporter():
            onnx_program = torch.onnx.export(
                built.module, built.inputs, input_names=list(built.input_names),
                output_names=list(built.output_names), dynamo=True, verbose=False,
            )  # fmt: skip
        if onnx_program is None:  # only the legacy exporter (dynamo=False) returns nothing
            raise OutputError("the ONNX exporter returned no program")
        onnx_program.save(str(path))


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """Silence the ONNX exporter's notes and deprecation warnings for the duration of one export.

    It logs a warning for each torchvision operator it cannot register (we use none).
    """
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            yield
    finally:
        logger.setLevel(level)


def _onnx_runner(path: Path, built: Built) -> Callable[[], tuple[Tensor, ...]]:
    ort = require("onnxruntime", "export")
    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    feeds = {name: x.numpy() for name, x in zip(built.input_names, built.inputs, strict=True)}
    return lambda: tuple(torch.from_numpy(y) for y in session.run(list(built.output_names), feeds))


def _program_runner(path: Path, built: Built) -> Callable[[], tuple[Tensor, ...]]:
    program = torch.export.load(path).module()

    def run() -> tuple[Tensor, ...]:
        with torch.inference_mode():
            return _as_tuple(program(*built.inputs))

    return run


def _compare(names: Sequence[str], got: tuple[Tensor, ...], expected: tuple[Tensor, ...]) -> dict[str, float]:
    """Relative errors of the float outputs; integer outputs must match exactly.

    Raises:
        OutputError: A shape, an integer output or a float output beyond :data:`MAX_RELATIVE_ERROR` differs.
    """
    errors = {}
    for name, a, b in zip(names, got, expected, strict=True):
        if a.shape != b.shape:
            raise OutputError(f"exported {name} has shape {tuple(a.shape)}, eager {tuple(b.shape)}")
        if not b.is_floating_point():
            if not torch.equal(a.to(b.dtype), b):
                raise OutputError(f"exported {name} differs from eager in {int((a != b).sum())} values")
            continue
        scale = float(b.abs().max()) or 1.0
        errors[name] = float((a.float() - b).abs().max()) / scale
        if errors[name] > MAX_RELATIVE_ERROR:
            raise OutputError(
                f"exported {name} differs from eager by {errors[name]:.2e} of its range "
                f"(at most {MAX_RELATIVE_ERROR:g} allowed): the file was not written"
            )
    return errors


def _as_tuple(out: Tensor | Sequence[Tensor]) -> tuple[Tensor, ...]:
    return (out,) if isinstance(out, Tensor) else tuple(out)


def _median_ms(fn: Callable[[], object], repeats: int) -> float:
    """Median milliseconds of ``repeats`` calls after one warm-up."""
    with torch.inference_mode():
        fn()
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3
