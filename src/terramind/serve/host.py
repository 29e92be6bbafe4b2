"""The model a server holds: loaded once, in the background, shared by every job; one model call at a time.

:class:`ModelHost` builds the generator (the model and the decoders of every served output, made resident)
on a background thread at start-up, so the HTTP server answers ``/healthz`` and ``/readyz`` while the
weights load. Jobs get a :meth:`~ModelHost.view`: a :class:`~terramind.generation.generate.Generator` over the
same model and tokenizers for the request's inputs and outputs (a subset of those served), so nothing is
loaded twice. :attr:`~ModelHost.lock` admits one model call per device at a time (several jobs can read and
write their tiles meanwhile). The encoder for ``/v1/embed`` is built on first use.
"""

from __future__ import annotations

import threading
import traceback
from collections.abc import Callable, Sequence
from typing import Literal

import torch

from terramind.core.errors import ModalityError, TerraMindError
from terramind.generation.generate import Generator, needed_tokenizers
from terramind.generation.scene import generator_digest
from terramind.modalities import Kind, get_modality, modality_names

HostState = Literal["loading", "ready", "failed"]


def default_inputs(outputs: Sequence[str]) -> tuple[str, ...]:
    """Return the inputs a server takes by default: every pixel image modality that it does not generate.

    Pixel inputs need no tokenizer, so accepting all of them costs nothing at start-up.
    """
    served = {get_modality(m).name for m in outputs}
    return tuple(
        name
        for name in modality_names()
        if get_modality(name).input_kind is Kind.PIXEL and get_modality(name).is_image and name not in served
    )


class ModelHost:
    """Holds the generator (and, once asked for, the embedding encoder) of a server.

    Args:
        factory: Builds the generator over every served input and output (called once, on a thread).
        device: Where the model runs.
        backbone_factory: Builds the encoder for embeddings (called on the first ``/v1/embed``); None: the
            server does not embed.
    """

    def __init__(
        self,
        factory: Callable[[], Generator],
        *,
        device: str = "cpu",
        backbone_factory: Callable[[], torch.nn.Module] | None = None,
    ) -> None:
        self.factory, self.device, self.backbone_factory = factory, device, backbone_factory
        self.state: HostState = "loading"
        self.error: str | None = None
        self.digest: str | None = None
        self.lock = threading.Lock()  # one model call per device
        self._ready = threading.Event()
        self._generator: Generator | None = None
        self._backbone: torch.nn.Module | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> ModelHost:
        """Start loading on a background thread (once); returns self."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._load, name="terramind-load", daemon=True)
            self._thread.start()
        return self

    def _load(self) -> None:
        try:
            generator = self.factory().to(self.device).keep_loaded()
            self.digest = generator_digest(generator)
            self._generator = generator
            self.state = "ready"
        except TerraMindError as err:
            self.state, self.error = "failed", str(err)
        except Exception as err:  # a bug: keep the server up to report it on /readyz
            traceback.print_exc()
            self.state, self.error = "failed", f"internal error while loading the model: {err!r}"
        finally:
            self._ready.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until loading ended (ready or failed); True if the model is ready."""
        self._ready.wait(timeout)
        return self.state == "ready"

    @property
    def generator(self) -> Generator:
        """Return the loaded generator.

        Raises:
            TerraMindError: The model is still loading or failed to load.
        """
        if self._generator is None:
            raise TerraMindError(self.error or "the model is still loading: retry when /readyz says ready")
        return self._generator

    def view(self, inputs: Sequence[str], outputs: Sequence[str]) -> Generator:
        """Return a generator for a request's inputs and outputs over the held model and tokenizers.

        Raises:
            ModalityError: An input or output the held generator does not have.
        """
        held = self.generator
        takes, makes = [s.name for s in held.inputs], [s.name for s in held.outputs]
        for names, have, what in ((inputs, takes, "takes inputs"), (outputs, makes, "generates")):
            extra = [n for n in names if n not in have]
            if extra:
                raise ModalityError(f"{', '.join(extra)}: this server {what} {', '.join(have)} only")
        needed = needed_tokenizers(inputs, outputs)
        tokenizers = {k: v for k, v in held.tokenizers.items() if k in needed}
        return Generator(held.model, tokenizers, inputs=inputs, outputs=outputs)

    def served(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """Return the (inputs, outputs) served: those of the held generator (empty until it is ready)."""
        if self._generator is None:
            return (), ()
        gen = self._generator
        return tuple(s.name for s in gen.inputs), tuple(s.name for s in gen.outputs)

    def backbone(self) -> torch.nn.Module:
        """Return the embedding encoder, built on first use (call with :attr:`lock` held).

        Raises:
            TerraMindError: This server does not embed.
        """
        if self._backbone is None:
            if self.backbone_factory is None:
                raise TerraMindError("this server does not compute embeddings")
            self._backbone = self.backbone_factory().to(self.device).eval()
        return self._backbone
