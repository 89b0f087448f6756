"""Whole transformer layers and models through the accelerator (``docs/DRIVER.md``).

The seven projections of every layer run on the device through the BitLinear integer-core hook
(:meth:`sw.driver.runtime.Accelerator.core`); everything else (RMSNorm, activation quantization, the
epilogue, RoPE, softmax attention, ReLU^2 / SwiGLU, residuals, the LM head) is the reference model's
own code in :mod:`sw.model`, so a correct device gives outputs ``torch.equal`` to the reference.

* :func:`load_model` resolves a model spec: ``demo``, a checkpoint folder, a ``.gguf`` file
  (:mod:`sw.model.gguf`), or a shape preset
  (``2b4t``, ``700m``, ``1.3b``, ``3b``: random ternary weights of the real sizes, layers generated
  lazily so a 2b4t model never holds all its weights);
* :func:`load_layer` gives one decoder layer (a preset layer is generated alone, a GGUF file's layer
  decoded alone);
* :func:`layer_check` runs a layer through the device and through the reference;
* :func:`generate` is greedy generation with the KV cache, step for step the loop of
  :meth:`sw.model.model.CausalLM.generate_greedy`, with the accelerator's core and a callback per
  step (progress bars, per-step statistics);
* :class:`DriverBackend` plugs the accelerator into :func:`sw.driver.demo.run_demo`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import torch

from hw.config import DEFAULT_CLOCK_MHZ, TernConfig
from sw.driver.runtime import Accelerator
from sw.model.gguf import is_gguf_path
from sw.model.presets import PRESETS

__all__ = ["ModelSpecError", "LoadedModel", "load_model", "model_config", "num_layers", "load_layer",
           "layer_input", "layer_check", "LayerCheck", "generate", "DriverBackend", "PRESET_NAMES"]

PRESET_NAMES = tuple(PRESETS)


class ModelSpecError(ValueError):
    """A model spec that is not ``demo``, a preset name, a checkpoint folder or a ``.gguf`` file."""


@dataclass
class LoadedModel:
    """A model and, when it has one, its tokenizer (an object with ``encode``/``decode``)."""
    spec: str
    kind: str            # "demo", "preset", "checkpoint" or "gguf"
    model: object        # sw.model.model.CausalLM
    tokenizer: object = None
    notes: tuple = ()    # what the loader decided (a GGUF file's MLP activation and its source)

    @property
    def config(self):
        return self.model.config


def _tokenizer_for(folder: Path):
    """The tokenizer next to a checkpoint: ``tokenizer.json`` as the demo's character tokenizer
    (``"type": "char"``) or a Hugging Face one run by the ``tokenizers`` library; None without one. A
    bad file is one line (``TokenizerError``), never a traceback."""
    p = folder / "tokenizer.json"
    if not p.is_file():
        return None
    from hw.fileio import read_json
    from sw.model.tokenizer import TOKENIZER_MAX_BYTES, CharTokenizer, TokenizerError, load_tokenizer_json
    d = read_json(p, what="tokenizer.json", max_bytes=TOKENIZER_MAX_BYTES, error=TokenizerError)
    if isinstance(d, dict) and d.get("type") == "char":
        return CharTokenizer.from_dict(d, source=str(p))
    return load_tokenizer_json(p)


#: A checkpoint whose safetensors files exceed this is loaded lazily (``load_checkpoint(lazy=True)``:
#: layers read from the files when used, embeddings in the file's dtype), a smaller one at once.
LAZY_BYTES = 512 * 1024 * 1024


def _check_spec(spec) -> Path | None:
    """Validates a model spec; returns the checkpoint folder or GGUF file (None for ``demo`` and
    presets)."""
    if not isinstance(spec, str) or not spec:
        raise ModelSpecError(f"model must be 'demo', a preset ({', '.join(PRESET_NAMES)}), a checkpoint "
                             f"folder or a .gguf file, not {spec!r}")
    if spec == "demo" or spec.lower() in PRESET_NAMES:
        return None
    folder = Path(spec)
    if is_gguf_path(spec):
        if not folder.is_file():
            raise ModelSpecError(f"model {spec!r}: no such GGUF file")
        return folder
    if not folder.exists():
        raise ModelSpecError(f"model {spec!r}: no such checkpoint folder (and not 'demo' or a preset: "
                             f"{', '.join(PRESET_NAMES)})")
    if not folder.is_dir():
        raise ModelSpecError(f"model {spec!r}: not a folder (a checkpoint is a folder with config.json and "
                             f"*.safetensors)")
    return folder


def load_model(spec: str, seed: int = 0) -> LoadedModel:
    """``demo``, a preset name (random weights from ``seed``) or a checkpoint folder."""
    folder = _check_spec(spec)
    if spec == "demo":
        from sw.model.demo_task import load_demo_model
        model, tok = load_demo_model()
        return LoadedModel(spec, "demo", model, tok)
    if folder is None:
        from sw.model.presets import random_model
        return LoadedModel(spec, "preset", random_model(spec.lower(), seed=seed, lazy=True), None)
    if is_gguf_path(spec):
        from sw.model.gguf import load_gguf, read_gguf
        from sw.model.tokenizer import gguf_tokenizer
        model = load_gguf(folder)
        return LoadedModel(spec, "gguf", model, gguf_tokenizer(read_gguf(folder)), (model.gguf_info.describe(),))
    from sw.model.checkpoint import load_checkpoint
    lazy = sum(f.stat().st_size for f in folder.glob("*.safetensors")) > LAZY_BYTES
    model = load_checkpoint(folder, lazy=lazy)
    return LoadedModel(spec, "checkpoint", model, _tokenizer_for(folder), ("loaded lazily",) if lazy else ())


def model_config(spec: str):
    """The :class:`sw.model.config.ModelConfig` of ``spec`` without loading any weights (a checkpoint's
    ``config.json`` and safetensors headers, or a GGUF file's metadata and tensor table, are read and
    checked against each other; a bad one raises ``CheckpointError``). A folder without safetensors
    files is a shape-only description (what ``tern estimate`` needs): its ``config.json`` alone."""
    folder = _check_spec(spec)
    if folder is None and spec != "demo":
        from sw.model.presets import preset_config
        return preset_config(spec.lower())
    if is_gguf_path(spec):
        from sw.model.gguf import gguf_config
        return gguf_config(folder)
    from sw.model.checkpoint import open_checkpoint, read_config
    if folder is None:
        from sw.model.demo_task import default_model_dir
        folder = default_model_dir()
    if not any(Path(folder).glob("*.safetensors")):
        return read_config(folder)[1]   # a shape-only folder (tern estimate): config.json alone
    return open_checkpoint(folder)[1]   # config.json checked against the safetensors headers


def num_layers(spec: str) -> int:
    """Layers of the model ``spec`` (from its configuration alone)."""
    return model_config(spec).num_hidden_layers


def load_layer(spec: str, index: int, seed: int = 0):
    """(decoder layer ``index`` of model ``spec``, its ModelConfig); a preset layer is generated alone."""
    if isinstance(spec, str) and spec.lower() in PRESET_NAMES:
        from sw.model.presets import preset_config, random_layer
        cfg = preset_config(spec.lower())
        _check_layer_index(index, cfg.num_hidden_layers, spec)
        return random_layer(cfg, index, seed), cfg
    if is_gguf_path(spec):   # only this layer's tensors are decoded
        path = _check_spec(spec)
        from sw.model.gguf import gguf_config, load_gguf_layer
        _check_layer_index(index, gguf_config(path).num_hidden_layers, spec)
        layer, cfg, _ = load_gguf_layer(path, index)
        return layer, cfg
    lm = load_model(spec, seed)
    _check_layer_index(index, lm.config.num_hidden_layers, spec)
    return lm.model.layers[index], lm.config


def _check_layer_index(index, n, spec):
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < n:
        raise ModelSpecError(f"layer {index!r} is out of range: model {spec!r} has layers 0..{n - 1}")


def layer_input(model_config, tokens: int, seed: int = 0) -> torch.Tensor:
    """The input of a layer check: float32 (1, tokens, hidden) drawn from N(0, 1) with ``seed``."""
    g = torch.Generator().manual_seed(int(seed))
    return torch.randn((1, tokens, model_config.hidden_size), generator=g, dtype=torch.float32)


@dataclass
class LayerCheck:
    """A layer through the device and through the reference. ``outputs`` holds every device run's
    output (``output`` is the last), ``runs`` the :class:`sw.driver.runtime.CallRecord` s of each run
    and ``run_wall_s`` each run's host wall time (the whole layer pass with the device's core: host ops,
    weight hashing and, on the first run, compiling, program building and the backend calls)."""
    input: torch.Tensor
    output: torch.Tensor
    reference_output: torch.Tensor
    outputs: tuple = ()
    runs: tuple = ()
    run_wall_s: tuple = ()

    @property
    def bit_exact_runs(self) -> list[bool]:
        """Per device run: its output ``torch.equal`` to the reference."""
        return [bool(torch.equal(o, self.reference_output)) for o in (self.outputs or (self.output,))]

    @property
    def bit_exact(self) -> bool:
        """Every device run's output ``torch.equal`` to the reference."""
        return all(self.bit_exact_runs)


@torch.no_grad()
def layer_check(acc: Accelerator, layer, x: torch.Tensor, start_pos: int = 0, repeat: int = 1) -> LayerCheck:
    """``layer(x)`` with the accelerator's core ``repeat`` times (the same accelerator, so the weights
    are compiled once, by the first run, and found in ``acc.cache`` by the others) and once with the
    reference core."""
    if isinstance(repeat, bool) or not isinstance(repeat, int) or repeat < 1:
        raise ValueError(f"repeat={repeat!r} must be an integer >= 1")
    outs, runs, walls = [], [], []
    for _ in range(repeat):
        first = len(acc.records)
        t0 = time.perf_counter()
        outs.append(layer(x, start_pos, None, acc.core))
        walls.append(time.perf_counter() - t0)
        runs.append(tuple(acc.records[first:]))
    ref = layer(x, start_pos, None, None)
    return LayerCheck(x, outs[-1], ref, tuple(outs), tuple(runs), tuple(walls))


@torch.no_grad()
def generate(model, ids, max_new_tokens: int, acc: Accelerator, *,
             on_step: Optional[Callable[[int, torch.Tensor], None]] = None) -> torch.Tensor:
    """Greedy continuation through the accelerator with the KV cache; returns the new ids
    (batch, max_new_tokens). The reference's own loop (``CausalLM.generate_greedy``, without early
    stop) with ``acc.core`` as the integer core: a prefill of the prompt, then one cached decode step
    per further token; ``acc.step`` tags every call with its step and ``acc.generated_tokens`` counts
    the tokens."""
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 0:
        raise ValueError(f"max_new_tokens={max_new_tokens!r} must be a non-negative integer")
    ids = model._check_ids(ids)
    if ids.shape[1] + max(0, max_new_tokens - 1) > model.config.max_position_embeddings:
        raise ValueError(f"prompt of {ids.shape[1]} tokens + {max_new_tokens} new tokens exceeds "
                         f"max_position_embeddings={model.config.max_position_embeddings}")
    first = acc.step + 1 if acc.records else 0
    if max_new_tokens:
        acc.step = first

    def on_token(s, nxt):
        acc.generated_tokens += int(nxt.numel())
        if on_step is not None:
            on_step(s, nxt)
        if s + 1 < max_new_tokens:
            acc.step = first + s + 1

    return model.generate_greedy(ids, max_new_tokens, acc.core, on_token=on_token)


class DriverBackend:
    """A :func:`sw.driver.demo.run_demo` backend that generates through an :class:`Accelerator`.

    ``stats`` (after a ``generate``) holds the accelerator's figures: ``cycles``, ``utilization``,
    ``bus_utilization``, ``tokens_per_s``, the per-projection ``breakdown``, ...; ``progress``, if
    given, is called as ``progress(calls_done, calls_expected)`` after every projection call."""

    def __init__(self, backend: str = "sim", config: TernConfig | None = None, *, timing=None,
                 clock_mhz: float = DEFAULT_CLOCK_MHZ, progress: Optional[Callable[[int, int], None]] = None):
        self.acc = Accelerator(config, backend, timing, clock_mhz=clock_mhz)
        self.progress = progress
        self.stats: dict = {}

    @property
    def name(self) -> str:
        return self.acc.backend

    def core(self, q, T, linear=None):
        return self.acc.core(q, T, linear)

    def generate_with_model(self, model, prompts, max_new_tokens: int) -> list:
        self.acc.reset_stats()
        n_calls = max_new_tokens * model.config.num_hidden_layers * 7
        if self.progress is not None:
            self.acc.on_call = lambda rec: self.progress(len(self.acc.records), n_calls)
        try:
            out = generate(model, prompts, max_new_tokens, self.acc)
        finally:
            self.acc.on_call = None
        self.stats = self.acc.stats
        return out.tolist()
