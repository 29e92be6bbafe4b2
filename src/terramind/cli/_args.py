"""The CLI's one vocabulary: shared option groups, parse-time checks and deprecated spellings.

Every subcommand adds its options through the ``add_*`` functions here, so a name, default, type and help
text exist once (``tests/cli/test_flags.py`` walks every subparser to keep it so). Values are checked while
parsing: ``type=`` callables reject bad numbers, unknown modality names and unavailable devices, and checks
that need several options (``--overlap`` < ``--tile``, ``--layer`` within the model's depth, output paths)
are registered with :func:`add_check` and run by ``terramind.cli.main`` before the command starts. Nothing
is loaded or created before every check has passed.

Old spellings (``--out``, ``--batch``, ``--bf16``, ``reconstruct --steps``, ``--weights none``) keep
working for one release, with a one-line note on stderr naming the new spelling.

A private module: command discovery skips names starting with ``_``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any, NoReturn

from terramind.core.errors import InputError, OutputError, TerraMindError
from terramind.core.files import check_output_dir, check_output_path
from terramind.core.optional import require
from terramind.data.geotiff import as_path, is_gdal_path
from terramind.modalities import get_modality

Check = Callable[[argparse.Namespace], None]
CHECKS = "_checks"  # namespace attribute holding a command's post-parse checks
WEIGHTS_HELP = "'hub' (the official release, default), 'random' (untrained) or a local file"


class UnknownOptionError(Exception):
    """``--options`` that a command's parser does not know; ``terramind.cli.main`` explains them."""

    def __init__(self, parser: argparse.ArgumentParser, options: list[str]) -> None:
        super().__init__(" ".join(options))
        self.parser = parser
        self.options = options


class Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line (with a pointer to ``--help``), exit code 2.

    A command's parser reports unknown ``--options`` (as :class:`UnknownOptionError`) before anything else, so
    a misspelt option is named rather than the required option it was meant to be.
    """

    def error(self, message: str) -> NoReturn:
        """Print ``PROG: error: MESSAGE`` on one line and exit 2."""
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        """Parse like argparse, raising :class:`UnknownOptionError` first where this parser is a command's."""
        unknown = unknown_long_options(self, sys.argv[1:] if args is None else args)
        if unknown:
            raise UnknownOptionError(self, unknown)
        return super().parse_known_args(args, namespace)


def unknown_long_options(parser: argparse.ArgumentParser, argv: Sequence[str]) -> list[str]:
    """``--options`` in ``argv`` that ``parser`` does not know, not even abbreviated.

    Empty for parsers with subcommands or that pass the rest on (``nargs=REMAINDER``).
    """
    if any(
        isinstance(a, argparse._SubParsersAction) or a.nargs == argparse.REMAINDER for a in parser._actions
    ):
        return []
    known = [s for s in parser._option_string_actions if s.startswith("--")]
    unknown = []
    for item in argv:
        if item == "--":
            break
        name = item.split("=", 1)[0]
        if name.startswith("--") and not any(k.startswith(name) for k in known):
            unknown.append(name)
    return unknown


def note(message: str) -> None:
    """Print a one-line note on stderr (deprecations, random weights)."""
    print(f"terramind: note: {message}", file=sys.stderr)


# ---------------------------------------------------------------------------------------------------------
# type= callables: each returns the parsed value or raises ArgumentTypeError with a specific message


def _number(text: str, kind: Callable[[str], Any], what: str) -> Any:
    try:
        return kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None


def positive_int(text: str) -> int:
    """Parse an integer >= 1 (batch sizes, steps, episode counts)."""
    value: int = _number(text, int, "a positive integer")
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer (1 or more), got {text!r}")
    return value


def non_negative_int(text: str) -> int:
    """Parse an integer >= 0 (``--top-k``, ``--overlap``)."""
    value: int = _number(text, int, "an integer >= 0")
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text!r}")
    return value


def non_negative_float(text: str) -> float:
    """Parse a finite number >= 0 (``--temperature``)."""
    value: float = _number(text, float, "a number >= 0")
    if not value >= 0 or value == float("inf"):  # also rejects nan
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text!r}")
    return value


def probability(text: str) -> float:
    """Parse a number in [0, 1] (``--top-p``)."""
    value: float = _number(text, float, "a number between 0 and 1")
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {text!r}")
    return value


def tile_size(text: str) -> int:
    """Parse a positive multiple of 16 pixels (the patch size of every TerraMind model)."""
    value: int = _number(text, int, "a positive multiple of 16")
    if value < 16 or value % 16:
        raise argparse.ArgumentTypeError(f"must be a positive multiple of 16 (the patch size), got {text!r}")
    return value


def modality(text: str) -> str:
    """Map a modality name (any alias) to its canonical name; unknown names list the valid ones."""
    try:
        return get_modality(text).name
    except TerraMindError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def modality_list(text: str) -> list[str]:
    """``MOD[,MOD...]`` -> canonical names in order; empty items are skipped."""
    names = [modality(item.strip()) for item in text.split(",") if item.strip()]
    if not names:
        raise argparse.ArgumentTypeError(f"expected MOD[,MOD...], got {text!r}")
    return names


def _pair(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name or not value:
        raise argparse.ArgumentTypeError(f"must look like MOD=VALUE (e.g. S2L2A=scene.tif), got {text!r}")
    return modality(name.strip()), value


def input_pair(text: str) -> tuple[str, Path]:
    """``MOD=PATH`` -> ``(canonical modality, path)``; a local path must exist.

    A GDAL virtual path or URL (``/vsicurl/...``, ``https://``, ``s3://``, ``gs://``) is kept verbatim and
    left to GDAL (:func:`terramind.data.geotiff.as_path`).
    """
    name, value = _pair(text)
    path = as_path(value)
    if not path.exists():
        raise argparse.ArgumentTypeError(f"{name} input {value!r} does not exist")
    return name, path


def offset_pair(text: str) -> tuple[str, float]:
    """Parse ``MOD=NUMBER`` -> ``(canonical modality, offset)``; a bare ``NUMBER`` -> ``("", offset)``."""
    name, value = _pair(text) if "=" in text else ("", text)
    number: float = _number(value, float, f"a number after {name}=" if name else "MOD=NUMBER or a number")
    if number != number or abs(number) == float("inf"):
        raise argparse.ArgumentTypeError(f"the offset must be a finite number, got {value!r}")
    return name, number


def input_file(text: str) -> Path:
    """Parse the path of an existing file (not a folder)."""
    path = Path(text)
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text!r} is a folder: give a file")
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"file {text!r} does not exist")
    return path


def weights(text: str) -> str:
    """``hub``, ``random`` or an existing file/folder; ``none`` is the deprecated spelling of ``random``."""
    if text == "none":
        note("'--weights none' is deprecated: use '--weights random'")
        return "random"
    if text in ("hub", "random") or Path(text).exists():
        return text
    raise argparse.ArgumentTypeError(f"expected 'hub', 'random' or an existing file, got {text!r}")


def model_name(text: str) -> str:
    """Map a released model size (``terramind_v1_base`` or ``base``) to its full name."""
    from terramind.checkpoints.models import model_record

    try:
        return model_record(text).name
    except TerraMindError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def available_devices() -> list[str]:
    """List the torch devices this machine has: ``cpu``, then ``cuda``/``cuda:N``, ``mps``."""
    import torch

    found = ["cpu"]
    if torch.cuda.is_available():
        found += ["cuda", *(f"cuda:{i}" for i in range(torch.cuda.device_count()))]
    if torch.backends.mps.is_available():
        found.append("mps")
    return found


def device(text: str) -> str:
    """``auto`` (cuda if available, else cpu) or a device that exists here -> the device to use."""
    found = available_devices()
    if text == "auto":
        return "cuda" if "cuda" in found else "cpu"
    if text not in found:
        raise argparse.ArgumentTypeError(
            f"device {text!r} is not available here; available: {', '.join(found)} (or auto)"
        )
    return text


# ---------------------------------------------------------------------------------------------------------
# actions


class PairsAction(argparse.Action):
    """Collect repeated ``MOD=VALUE`` options into a dict by canonical modality; a repeat is an error."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        name, value = values
        current = dict(getattr(namespace, self.dest, None) or {})
        if name in current:
            parser.error(f"{option_string} {name} given twice")
        current[name] = value
        setattr(namespace, self.dest, current)


class DeprecatedAlias(argparse.Action):
    """A hidden old spelling: stores like the new option and notes the new spelling on stderr."""

    def __init__(self, option_strings: Sequence[str], dest: str, *, new: str, **kwargs: Any) -> None:
        self.new = new
        kwargs.setdefault("help", argparse.SUPPRESS)
        super().__init__(option_strings, dest, **kwargs)

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        note(f"'{option_string}' is deprecated and will be removed in the next release: use '{self.new}'")
        setattr(namespace, self.dest, self.const if self.nargs == 0 else values)


def deprecated(p: argparse.ArgumentParser, old: str, new: str, dest: str, **kwargs: Any) -> None:
    """Accept ``old`` as a hidden alias of ``new`` (stored in ``dest``) for one more release."""
    p.add_argument(old, dest=dest, action=DeprecatedAlias, new=new, default=argparse.SUPPRESS, **kwargs)
    for action in p._actions:
        if action.dest == dest and action.required:  # either spelling satisfies it: checked after parsing
            action.required = False
            add_check(p, partial(_check_given, dest, new))


def _check_given(dest: str, new: str, args: argparse.Namespace) -> None:
    if getattr(args, dest, None) is None:
        raise InputError(f"the following arguments are required: {new}")


def add_check(p: argparse.ArgumentParser, check: Check) -> None:
    """Run ``check(args)`` after parsing, before the command (it raises a :class:`TerraMindError`)."""
    p.set_defaults(**{CHECKS: (*(p.get_default(CHECKS) or ()), check)})


def run_checks(args: argparse.Namespace) -> None:
    """Run the checks the command registered (``terramind.cli.main`` calls this before the command)."""
    for check in getattr(args, CHECKS, ()):
        check(args)


# ---------------------------------------------------------------------------------------------------------
# option groups


def add_inputs(p: argparse.ArgumentParser, *, required: bool = True) -> None:
    """``--input MOD=PATH`` (repeatable) -> ``args.input``: canonical modality -> existing path."""
    p.add_argument(
        "--input",
        action=PairsAction,
        type=input_pair,
        required=required,
        metavar="MOD=PATH",
        help="an input modality and its GeoTIFF (repeat for several modalities)",
    )


def add_tile_input(p: argparse.ArgumentParser) -> None:
    """Add one tile: ``FILE --modality M`` (shorthand) or ``--input M=FILE`` -> ``args.input``."""
    p.add_argument("file", type=Path, nargs="?", help="input GeoTIFF tile (with --modality)")
    p.add_argument(
        "-m", "--modality", type=modality, help="the tile's modality, e.g. S2L2A, S1RTC, DEM, LULC"
    )
    add_inputs(p, required=False)
    add_check(p, _check_tile_input)


def _check_tile_input(args: argparse.Namespace) -> None:
    _one_tile(args)
    if args.file.is_dir():
        raise InputError(f"input {str(args.file)!r} is a folder: give one GeoTIFF tile")
    if not args.file.exists():
        raise InputError(f"input file {str(args.file)!r} does not exist")


def _one_tile(args: argparse.Namespace) -> None:
    """Read ``FILE --modality M`` or one ``--input M=FILE`` into ``args.input``, ``.modality``, ``.file``."""
    if args.input is not None and (args.file is not None or args.modality is not None):
        raise InputError("give the tile either as FILE --modality M or as --input M=FILE, not both")
    if args.input is None:
        if args.file is None or args.modality is None:
            raise InputError("give the tile as FILE --modality M (or --input M=FILE)")
        args.input = {args.modality: args.file}
    if len(args.input) != 1:
        raise InputError(f"this command takes one tile, got --input {', '.join(args.input)}")
    ((args.modality, args.file),) = args.input.items()


def add_output(p: argparse.ArgumentParser, what: str, *, folder: bool = False, required: bool = True) -> None:
    """``-o/--output`` (``what`` says what is written there); checked before any work.

    Args:
        p: The subcommand's parser.
        what: Help text: what the command writes.
        folder: The output is a folder (created if missing) rather than a file.
        required: Whether the option must be given.
    """
    p.add_argument("-o", "--output", type=Path, required=required, metavar="PATH", help=what)
    add_check(p, _check_output_folder if folder else _check_output_file)


def _refuse_url_output(out: Path | None) -> None:
    if out is not None and is_gdal_path(out):
        raise OutputError(
            f"output {str(out)!r} is a URL or GDAL virtual path: outputs are written to local files; give a "
            f"local path and upload the result"
        )


def _check_output_file(args: argparse.Namespace) -> None:
    _refuse_url_output(args.output)
    check_output_file(args.output, overwrite=getattr(args, "overwrite", True))


def check_output_file(out: Path | None, *, overwrite: bool) -> None:
    """Fail unless ``out`` can be written (:func:`terramind.core.files.check_output_path`); None passes."""
    if out is not None:
        check_output_path(out, overwrite=overwrite)


def _check_output_folder(args: argparse.Namespace) -> None:
    _refuse_url_output(args.output)
    if args.output is not None:
        check_output_dir(args.output)


def add_config_files(p: argparse.ArgumentParser, help: str) -> None:
    """``-c/--config FILE``, repeatable and required: the files a command reads in order (``args.config``)."""
    p.add_argument("-c", "--config", action="append", required=True, type=input_file, help=help)


def add_training_configs(p: argparse.ArgumentParser) -> None:
    """``-c/--config`` (repeatable: a base and overlays, deep-merged, later wins), ``--resume``, ``--set``."""
    add_config_files(
        p, "YAML run config; repeat for overlays (-c base.yaml -c more.yaml: mappings merge, later wins)"
    )
    p.add_argument(
        "--resume", default=None, help="checkpoint path, or 'last' (<out_dir>/checkpoints/last.ckpt)"
    )
    add_config_overrides(p)


def load_training_configs(args: argparse.Namespace, module: str, config_class: str) -> Any:
    """Import a trainer (naming the ``train`` extra if missing), read its config(s) and check the run.

    Args:
        args: The command's namespace (``config``: one path or more, base first; ``set``; ``resume``).
        module: The trainer's module (``terramind.train.pretrain``, ``terramind.finetune.config``).
        config_class: The config dataclass's name in that module or in ``terramind.train.config``.

    Returns:
        The loaded config (the files deep-merged, later wins, then ``--set``), checked by
        :func:`check_training_run` unless it is only printed (``--print-config``).
    """
    trainer = require(module, "train")
    config_module = require("terramind.train.config", "train")
    cls = getattr(trainer, config_class, None) or getattr(config_module, config_class)
    config = config_module.load_yaml(cls, *args.config, sets=config_sets(args))
    if not getattr(args, "print_config", False):
        check_training_run(config.trainer, getattr(args, "resume", None))
    return config


def check_training_run(trainer: Any, resume: str | None) -> None:
    """Check before any model is built: ``out_dir`` can hold outputs, a ``--resume`` checkpoint is whole.

    Args:
        trainer: The run config's trainer section (``out_dir``; it also locates ``--resume last``).
        resume: ``--resume``: a checkpoint path, ``"last"`` or None.
    """
    from terramind.checkpoints.io import check_checkpoint
    from terramind.train.pretrain import resume_path

    check_output_dir(trainer.out_dir)
    path = resume_path(trainer, resume)
    if path is not None:
        check_checkpoint(path)


def add_model(p: argparse.ArgumentParser) -> None:
    """``--model``: a released TerraMind size, checked against the release table."""
    p.add_argument(
        "--model",
        type=model_name,
        default="terramind_v1_base",
        help="model size: terramind_v1_{tiny,small,base,large} or just the size (default terramind_v1_base)",
    )


def add_weights(p: argparse.ArgumentParser, *, tokenizers: bool = True) -> None:
    """``--weights`` and (where tokenizers run) ``--tokenizer-weights``: ``hub`` | ``random`` | PATH."""
    p.add_argument("--weights", type=weights, default="hub", metavar="hub|random|PATH", help=WEIGHTS_HELP)
    if not tokenizers:
        return
    p.add_argument(
        "--tokenizer-weights",
        type=weights,
        default=None,
        metavar="hub|random|PATH",
        help="tokenizer weights: 'hub', 'random', or a file or folder of release files "
        "(default: as --weights)",
    )


def tokenizer_weights(args: argparse.Namespace) -> str:
    """Return the tokenizer weights a command uses: ``--tokenizer-weights``, else ``--weights``."""
    value: str = args.weights if args.tokenizer_weights is None else args.tokenizer_weights
    return value


def library_weights(value: str) -> str | None:
    """Return the library's spelling of a ``--weights`` value (``None``: random initialisation)."""
    return None if value == "random" else value


def add_device(p: argparse.ArgumentParser) -> None:
    """``--device`` (default ``auto``), checked against the devices this machine has."""
    p.add_argument(
        "--device", type=device, default="auto", help="auto (cuda if available, else cpu), cpu, cuda"
    )


def add_precision(p: argparse.ArgumentParser) -> None:
    """``--precision {auto,fp32,bf16}``; ``--bf16`` is the deprecated spelling of ``--precision bf16``."""
    from terramind.build import precision  # the one list of precisions, beside what auto means

    p.add_argument(
        "--precision",
        choices=precision.PRECISIONS,
        default="auto",
        help="auto (default): bf16 where the hardware multiplies bf16 natively (CPUs with avx512_bf16 or "
        "amx_bf16, CUDA GPUs of compute capability 8.0+), else fp32; fp32: exact (parity); bf16: autocast",
    )
    deprecated(p, "--bf16", "--precision bf16", "precision", nargs=0, const="bf16")


def add_batch_size(p: argparse.ArgumentParser) -> None:
    """``--batch-size`` (positive); ``--batch`` is its deprecated spelling."""
    p.add_argument("--batch-size", type=positive_int, default=4, help="tiles per model call (default 4)")
    deprecated(p, "--batch", "--batch-size", "batch_size", type=positive_int)


def add_diffusion_steps(p: argparse.ArgumentParser, *, old_steps: bool = False) -> None:
    """``--diffusion-steps``; ``old_steps`` also accepts ``--steps`` as its deprecated spelling."""
    p.add_argument(
        "--diffusion-steps",
        type=positive_int,
        default=10,
        help="DDIM steps of diffusion decoders (default 10; the release used 50)",
    )
    if old_steps:
        deprecated(p, "--steps", "--diffusion-steps", "diffusion_steps", type=positive_int)


def add_seed(p: argparse.ArgumentParser) -> None:
    """``--seed`` of all randomness of a run."""
    p.add_argument("--seed", type=int, default=0, help="seed of all random sampling (default 0)")


def add_overwrite(p: argparse.ArgumentParser) -> None:
    """``--overwrite``."""
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")


def add_skip_bad(p: argparse.ArgumentParser) -> None:
    """``--skip-bad``: leave out bad tiles of an input folder (listed with reasons) instead of stopping."""
    p.add_argument(
        "--skip-bad",
        action="store_true",
        help="skip unreadable, off-grid or otherwise bad tiles (each listed with its reason) instead of "
        "stopping at the first",
    )


SENSOR_FLAG = "--sensor"


def add_sensors(p: argparse.ArgumentParser) -> None:
    """``--sensor FILE`` (repeatable): a new sensor's record, registered for this one command.

    :func:`terramind.cli.main.main` reads these files before parsing (see :func:`sensor_records`), so the
    sensor's name is known to every option that names a modality.
    """
    p.add_argument(
        SENSOR_FLAG,
        action="append",
        type=input_file,
        metavar="FILE",
        help="a new sensor, as JSON or YAML {name, bands, mean, std, unit}; repeat for several",
    )


def sensor_records(argv: Sequence[str]) -> list[dict[str, Any]]:
    """Read the ``--sensor FILE`` records of a command line, in order (before it is parsed).

    Raises:
        InputError: A missing file, or one that is not a JSON/YAML mapping.
    """
    files = [argv[i + 1] for i, a in enumerate(argv[:-1]) if a == SENSOR_FLAG]
    files += [a.split("=", 1)[1] for a in argv if a.startswith(f"{SENSOR_FLAG}=")]
    return [_sensor_record(Path(f)) for f in files]


def _sensor_record(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise InputError(f"--sensor {str(path)!r}: no such file")
    text = path.read_text()
    if path.suffix.lower() in (".yaml", ".yml"):
        yaml = require("yaml", "train")
        record = yaml.safe_load(text)
    else:
        try:
            record = json.loads(text)
        except json.JSONDecodeError as err:
            raise InputError(f"--sensor {str(path)!r} is not JSON ({err}); YAML files end in .yaml") from None
    if not isinstance(record, dict):
        raise InputError(f"--sensor {str(path)!r} must hold one mapping {{name, bands, mean, std, unit}}")
    return record


def add_json(p: argparse.ArgumentParser) -> None:
    """``--json``."""
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")


def add_offsets(p: argparse.ArgumentParser) -> None:
    """``--offset MOD=NUMBER`` (repeatable) -> ``args.offset``: canonical modality -> float."""
    p.add_argument(
        "--offset",
        action=PairsAction,
        type=offset_pair,
        default={},
        metavar="MOD=NUMBER",
        help="add NUMBER to a modality's mean (S2 products with the +1000 DN offset: S2L2A=1000); "
        "a bare NUMBER applies to the only input",
    )
    add_check(p, _check_offsets)


def _check_offsets(args: argparse.Namespace) -> None:
    """Give a bare ``--offset NUMBER`` to the command's only input."""
    if "" not in args.offset:
        return
    offsets = dict(args.offset)
    number = offsets.pop("")
    if len(args.input or {}) != 1:
        raise InputError(f"--offset {number:g} without MOD=: name the modality (e.g. S2L2A={number:g})")
    (name,) = args.input
    if name in offsets:
        raise InputError(f"--offset {name} given twice")
    args.offset = {**offsets, name: number}


def add_sampling(p: argparse.ArgumentParser) -> None:
    """``--temperature``, ``--top-p``, ``--top-k`` of token sampling."""
    p.add_argument(
        "--temperature", type=non_negative_float, default=1.0, help="sampling temperature (0 = greedy)"
    )
    p.add_argument(
        "--top-p", type=probability, default=0.8, help="nucleus sampling threshold in [0, 1] (0 = off)"
    )
    p.add_argument("--top-k", type=non_negative_int, default=0, help="top-k sampling (0 = off)")


def add_tiling(p: argparse.ArgumentParser) -> None:
    """``--tile`` and ``--overlap`` of whole-scene commands; the overlap must be smaller than the tile."""
    p.add_argument("--tile", type=tile_size, default=224, help="tile side in pixels (multiple of 16)")
    p.add_argument(
        "--overlap", type=non_negative_int, default=32, help="overlap of neighbouring tiles in pixels"
    )
    add_check(p, _check_tiling)


def _check_tiling(args: argparse.Namespace) -> None:
    if args.overlap >= args.tile:
        raise InputError(f"--overlap ({args.overlap}) must be smaller than --tile ({args.tile})")


def add_layer(p: argparse.ArgumentParser) -> None:
    """``--layer``: an encoder block of ``--model`` (negative counts from the end)."""
    p.add_argument("--layer", type=int, default=-1, help="encoder block to read (default -1, the last)")
    add_check(p, _check_layer)


def _check_layer(args: argparse.Namespace) -> None:
    from terramind.checkpoints.models import model_record

    depth = model_record(args.model).config.encoder_depth
    if not -depth <= args.layer < depth:
        raise InputError(
            f"--layer {args.layer} is outside {args.model}'s {depth} encoder blocks: "
            f"use 0..{depth - 1} (or -{depth}..-1 from the end)"
        )


def add_serve_options(p: argparse.ArgumentParser) -> None:
    """Where ``serve`` listens, who may call it, where jobs live and what a request may ask for."""
    p.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine)"
    )
    p.add_argument("--port", type=positive_int, default=8000, help="port to listen on (default 8000)")
    p.add_argument(
        "--token-file",
        type=input_file,
        default=None,
        metavar="FILE",
        help="file holding the bearer token every API call must send (default: $TERRAMIND_TOKEN; none: open)",
    )
    p.add_argument(
        "--data-root",
        type=_existing_folder,
        default=None,
        metavar="DIR",
        help="folder whose files requests may name as MOD_path (default: no server-side paths)",
    )
    p.add_argument(
        "--work-dir",
        type=Path,
        default=Path("terramind-serve"),
        metavar="DIR",
        help="folder of the jobs: uploads, outputs, records (kept across restarts; default "
        "./terramind-serve)",
    )
    p.add_argument(
        "--workers",
        type=positive_int,
        default=1,
        help="jobs run at once, sharing one model whose calls take turns (default 1)",
    )
    p.add_argument("--queue-size", type=positive_int, default=16, help="jobs that may wait (then 429)")
    p.add_argument(
        "--keep-hours",
        type=non_negative_float,
        default=24.0,
        help="hours finished jobs are kept (default 24)",
    )
    p.add_argument("--max-upload-mb", type=non_negative_float, default=512.0, help="largest request (413)")
    p.add_argument(
        "--max-pixels", type=positive_int, default=121_000_000, help="largest scene in pixels (413)"
    )
    p.add_argument("--max-tiles", type=positive_int, default=4096, help="most tiles of one job (413)")
    p.add_argument(
        "--cors-origin",
        action="append",
        metavar="URL",
        help="allow browser pages from this origin to call the API (repeatable; default: CORS off)",
    )
    add_check(p, _check_work_dir)


def _existing_folder(text: str) -> Path:
    path = Path(text)
    if not path.is_dir():
        raise argparse.ArgumentTypeError(f"folder {text!r} does not exist")
    return path


def _check_work_dir(args: argparse.Namespace) -> None:
    check_output_dir(args.work_dir)


def ray_address(text: str) -> str:
    """Parse a Ray cluster address ``ray://HOST:PORT``."""
    from urllib.parse import urlparse

    url = urlparse(text)
    try:
        port = url.port
    except ValueError:
        port = None
    if url.scheme != "ray" or not url.hostname or not port:
        raise argparse.ArgumentTypeError(f"expected ray://HOST:PORT (Ray's client port, 10001), got {text!r}")
    return text


def add_cluster(p: argparse.ArgumentParser) -> None:
    """Add ``--address``, ``--workers``, ``--threads-per-worker``, ``--num-gpus-per-worker``, ``--retries``.

    An address that does not answer is refused (within seconds) before anything is read or written.
    """
    p.add_argument(
        "--address",
        type=ray_address,
        default=None,
        metavar="ray://HOST:PORT",
        help="an existing Ray cluster (default: start Ray on this machine)",
    )
    p.add_argument(
        "--workers", type=positive_int, default=1, help="workers, each holding the model (default 1)"
    )
    p.add_argument(
        "--threads-per-worker",
        type=positive_int,
        default=1,
        help="torch threads (Ray CPUs) per worker (default 1)",
    )
    p.add_argument(
        "--num-gpus-per-worker",
        type=non_negative_float,
        default=0.0,
        metavar="F",
        help="GPUs per worker (fractions share a GPU; default 0)",
    )
    p.add_argument(
        "--retries",
        type=non_negative_int,
        default=0,
        help="further attempts for a scene that failed (default 0)",
    )
    add_check(p, _check_address)


def _check_address(args: argparse.Namespace) -> None:
    if args.address is not None:
        from terramind.batch.runner import check_address

        check_address(args.address)


# ---------------------------------------------------------------------------------------------------------
# scenes: inputs in the forms users hold them, the target grid, resampling, the product offset

_GLOB_CHARS = frozenset("*?[")
SCENE_INPUT_HELP = (
    "an input modality and its scene: a GeoTIFF/COG or URL, a folder or .SAFE of band files, a STAC item "
    "JSON, or band files as a comma-separated list or a quoted glob (repeat per modality)"
)


def scene_input_pair(text: str) -> tuple[str, Path | tuple[Path, ...]]:
    """``MOD=PATH``, ``MOD=B02.tif,B03.tif,...`` or ``MOD='folder/*_B??_*.jp2'`` -> modality and input.

    A single path is checked as :func:`input_pair` does; a comma-separated list or a glob pattern becomes
    the band files of one input (:class:`terramind.scene.BandFilesSource`), each of which must exist.
    """
    name, value = _pair(text)
    if "," not in value and not _GLOB_CHARS & set(value):
        return input_pair(text)
    if "," in value:
        paths = [Path(v.strip()) for v in value.split(",") if v.strip()]
        missing = [str(p) for p in paths if not p.is_file()]
        if missing:
            raise argparse.ArgumentTypeError(f"{name} band file(s) {', '.join(missing)} do not exist")
    else:
        pattern = Path(value)
        anchor = Path(pattern.anchor or ".")
        paths = sorted(p for p in anchor.glob(str(pattern.relative_to(anchor))) if p.is_file())
        if not paths:
            raise argparse.ArgumentTypeError(f"{name} pattern {value!r} matches no file")
    return name, tuple(paths)


def add_scene_inputs(p: argparse.ArgumentParser, *, required: bool = True) -> None:
    """``--input MOD=...`` of scene commands: raster/URL, folder/SAFE, STAC item, band-file list or glob.

    Args:
        p: The parser.
        required: Whether the command needs at least one (``finetune scene`` also takes ``--series``).
    """
    p.add_argument(
        "--input",
        action=PairsAction,
        type=scene_input_pair,
        required=required,
        metavar="MOD=PATH",
        help=SCENE_INPUT_HELP,
    )


def add_grid(p: argparse.ArgumentParser) -> None:
    """``--grid MOD``: the input whose grid the outputs are on (the others are warped onto it)."""
    p.add_argument(
        "--grid",
        type=modality,
        default=None,
        metavar="MOD",
        help="write the outputs on this input's grid; inputs on other grids are warped onto it "
        "(default: the first input's)",
    )
    add_check(p, _check_grid)


def _check_grid(args: argparse.Namespace) -> None:
    inputs = {**(getattr(args, "series", None) or {}), **(args.input or {})}  # --series: finetune scene
    if args.grid is not None and args.grid not in inputs:
        raise InputError(f"--grid {args.grid}: no such input; give one of {', '.join(inputs)}")


def add_resampling(p: argparse.ArgumentParser) -> None:
    """``--resampling``: how continuous inputs are resampled (coarser band files, other grids)."""
    from rasterio.enums import Resampling

    p.add_argument(
        "--resampling",
        default="bilinear",
        choices=sorted(Resampling.__members__),
        metavar="METHOD",
        help="resampling of 20/60 m band files and of inputs on another grid (default bilinear; class "
        "maps are always nearest)",
    )


def apply_product_offsets(args: argparse.Namespace) -> None:
    """Use the +1000 DN offset that each input's product metadata implies, unless ``--offset`` gives one.

    Reads STAC items, ``MTD_MSIL*.xml`` of band-files folders and GeoTIFF tags
    (:mod:`terramind.scene.offsets`); the choice is printed once per input whose metadata says something.
    Sets ``args.offset``.
    """
    from terramind.scene.offsets import resolve_offsets

    args.offset = resolve_offsets(args.input, getattr(args, "offset", None), say=note)


def add_stac(p: argparse.ArgumentParser) -> None:
    """``--stac``: also write a STAC item describing the outputs (needs ``terramind[stac]``)."""
    p.add_argument(
        "--stac",
        action="store_true",
        help="also write a STAC item JSON describing the outputs beside them (needs terramind[stac])",
    )
    add_check(p, _check_stac)


def _check_stac(args: argparse.Namespace) -> None:
    if args.stac:
        require("pystac", "stac")


def write_stac(
    args: argparse.Namespace, item: Path, outputs: Sequence[Path], georef: Any, settings: dict[str, Any]
) -> None:
    """Write the ``--stac`` item of a scene run (:mod:`terramind.scene.stac_item`) and say where it went.

    The item's datetime is the input's; when no input states one, now, and a note says so.
    """
    from terramind.scene.stac_item import input_datetime, write_stac_item

    properties = {f"terramind:{k}": v for k, v in json.loads(json.dumps(settings, default=str)).items()}
    when = input_datetime(args.input)
    path, _ = write_stac_item(
        item, outputs, georef, item_id=f"terramind-{item.parent.name}-{item.stem}", when=when,
        properties=properties, overwrite=True,
    )  # fmt: skip
    if when is None:
        note(f"no input states its acquisition time: the STAC item {str(path)!r} is dated now")
    print(f"wrote {path}")


def add_scene_tile_input(p: argparse.ArgumentParser) -> None:
    """One scene in any form (``inspect``): ``FILE --modality M`` or ``--input M=...`` -> ``args.input``.

    As :func:`add_tile_input`, but FILE may also be a URL, a band-files folder/SAFE or a STAC item, and
    ``--input`` also takes band files as a list or glob (:func:`scene_input_pair`).
    """
    p.add_argument(
        "file", type=as_path, nargs="?", help="input GeoTIFF/COG, URL, band-files folder or STAC item"
    )
    p.add_argument(
        "-m", "--modality", type=modality, help="the tile's modality, e.g. S2L2A, S1RTC, DEM, LULC"
    )
    p.add_argument(
        "--input",
        action=PairsAction,
        type=scene_input_pair,
        required=False,
        metavar="MOD=PATH",
        help=SCENE_INPUT_HELP,
    )
    add_check(p, _check_scene_tile_input)


def _check_scene_tile_input(args: argparse.Namespace) -> None:
    if args.input is None and args.file is not None and args.modality is not None and not args.file.exists():
        raise InputError(f"input {str(args.file)!r} does not exist")
    _one_tile(args)


def add_task_checkpoint(p: argparse.ArgumentParser) -> None:
    """``-c/--config`` (one or more) and ``--ckpt_path`` of a fine-tuned task (``finetune scene``, batch)."""
    add_config_files(p, "the task's config file(s)")
    p.add_argument("--ckpt_path", required=True, type=input_file, help="a checkpoint written by `fit`")


COMPILE_CHOICES: dict[str, bool | str] = {"auto": "auto", "on": True, "off": False}


def compile_setting(text: str) -> bool | str:
    """Parse ``auto``, ``on`` or ``off`` into ``GenerationOptions.compile``'s ``"auto"``, True or False."""
    if text not in COMPILE_CHOICES:
        raise argparse.ArgumentTypeError(f"must be auto, on or off, got {text!r}")
    return COMPILE_CHOICES[text]


def add_compile(p: argparse.ArgumentParser) -> None:
    """``--compile {auto,on,off}`` -> ``args.compile`` as ``GenerationOptions.compile`` takes it."""
    p.add_argument(
        "--compile",
        type=compile_setting,
        default="auto",
        metavar="{auto,on,off}",
        help="compile the diffusion decoders: auto (default: on a GPU from the second batch of a shape, "
        "never on the CPU, where compiling takes minutes), on, off",
    )


def add_generation_options(p: argparse.ArgumentParser) -> None:
    """Add what to generate and how (``generate``, ``batch generate``: the same flags in both).

    ``--to``, the model and weights, the seed, the decoding options (read by
    :func:`terramind.cli.generate.options_from_args`), offsets, tiling, precision and compiling.
    """
    from terramind.generation.strategies import STRATEGIES

    p.add_argument(
        "--to", required=True, type=modality_list, metavar="MOD[,MOD...]", help="outputs, in order"
    )
    add_model(p)
    add_weights(p)
    add_seed(p)
    p.add_argument("--steps", type=positive_int, default=1, help="token decoding steps per output")
    p.add_argument("--strategy", default="roar", choices=sorted(STRATEGIES), help="decoding strategy")
    add_diffusion_steps(p)
    add_sampling(p)
    add_offsets(p)
    p.add_argument("--no-chain", action="store_true", help="do not feed generated outputs to later outputs")
    add_tiling(p)
    add_precision(p)
    add_compile(p)


def add_water_options(p: argparse.ArgumentParser) -> None:
    """Add the zero-shot water mask's options (``zeroshot water``, ``batch zeroshot-water``).

    ``--flooded-vegetation``, and the model, weights and seed of the LULC generation.
    """
    p.add_argument("--flooded-vegetation", action="store_true", help="count flooded vegetation as water")
    add_model(p)
    add_weights(p)
    add_seed(p)


SERIES_HELP = (
    "a modality and its series: a folder of GeoTIFFs dated in their names (tile_2021-06-01.tif), a CSV of "
    "path,date[,modality] rows, an ImpactMesh .zarr.zip (not for a whole scene: it has no grid), or one "
    "GeoTIFF for a static modality such as DEM (repeat for several modalities)"
)


def add_series(p: argparse.ArgumentParser, *, required: bool = True) -> None:
    """``--series MOD=PATH`` (repeatable) -> ``args.series``: canonical modality -> existing path.

    The one spelling of a time series on the command line (``embed-series``, ``finetune scene``), read by
    :func:`terramind.data.series.series_source` as the temporal datamodule reads a sample's series.

    Args:
        p: The parser.
        required: Whether the command needs at least one.
    """
    p.add_argument(
        "--series",
        action=PairsAction,
        type=input_pair,
        required=required,
        metavar="MOD=PATH",
        help=SERIES_HELP,
    )


def say_once(say: Callable[[str], None] = note) -> Callable[[str], None]:
    """``say`` (default :func:`note`) that passes each distinct line on once (a warp seen by two readers)."""
    said: set[str] = set()

    def once(line: str) -> None:
        if line not in said:
            said.add(line)
            say(line)

    return once


def config_setting(text: str) -> tuple[tuple[str, ...], Any]:
    """Parse ``--set SECTION.KEY=VALUE`` into the key path and the YAML-parsed value."""
    import yaml

    from terramind.train.config import parse_yaml, yaml_problem

    key, sep, value = text.partition("=")
    path = tuple(key.strip().split("."))
    if not sep or not all(path):
        raise argparse.ArgumentTypeError(
            f"expected SECTION.KEY=VALUE (e.g. trainer.max_epochs=5), got {text!r}"
        )
    try:
        return path, parse_yaml(value)
    except yaml.YAMLError as err:
        raise argparse.ArgumentTypeError(f"{key}: the value is not valid YAML: {yaml_problem(err)}") from None


def add_config_overrides(p: argparse.ArgumentParser) -> None:
    """``--set SECTION.KEY=VALUE`` (repeatable, after the ``-c`` files) and ``--print-config``."""
    p.add_argument(
        "--set", action="append", default=[], type=config_setting, metavar="SECTION.KEY=VALUE",
        help="replace one config value after the -c files (YAML value; repeatable), e.g. "
        "--set data.data_root=/data/x --set trainer.max_epochs=5",
    )  # fmt: skip
    p.add_argument(
        "--print-config", action="store_true", help="print the merged, checked config as YAML and exit"
    )


def config_sets(args: argparse.Namespace) -> dict[str, Any]:
    """Return the ``--set`` values as one nested mapping (later ones win), the loader's last overlay."""
    merged: dict[str, Any] = {}
    for path, value in getattr(args, "set", []):
        node = merged
        for key in path[:-1]:
            node = node.setdefault(key, {})
            if not isinstance(node, dict):
                raise InputError(f"--set {'.'.join(path)}: {key} is set to a value, not a section")
        node[path[-1]] = value
    return merged


def print_config(args: argparse.Namespace, config: Any) -> bool:
    """Print the config as YAML if ``--print-config`` asked for it; return whether it did."""
    if not getattr(args, "print_config", False):
        return False
    import yaml

    from terramind.train.config import to_dict

    print(yaml.safe_dump(to_dict(config), sort_keys=False), end="")
    return True


def add_max_dates(p: argparse.ArgumentParser) -> None:
    """``--max-steps T`` of time-series commands (``embed-series``, ``finetune scene --series``)."""
    p.add_argument(
        "--max-steps", type=positive_int, default=None, metavar="T", help="refuse series of more dates"
    )
