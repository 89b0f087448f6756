"""The PyTorch reference model of tern: quantizers, BitLinear, BitNet blocks, checkpoints, presets.

Public API (see docs/MODEL.md):

- :mod:`sw.model.quant`: ``weight_quant``, ``act_quant``, ``ternary_matmul``, ``epilogue`` (the numerics of ``docs/MODEL.md``)
- :mod:`sw.model.bitlinear`: ``BitLinear`` (``forward``, ``forward_exact``), the integer-core hook type ``Core``
- :mod:`sw.model.config`: ``ModelConfig`` (``from_hf_dict``, ``to_hf_dict``)
- :mod:`sw.model.layers` / :mod:`sw.model.model`: ``DecoderLayer``, ``KVCache``, ``CausalLM``
- :mod:`sw.model.packing`: ``pack_ternary`` / ``unpack_ternary`` (transformers' 2-bit layout)
- :mod:`sw.model.checkpoint`: ``load_checkpoint``, ``save_checkpoint``, ``CheckpointError``
- :mod:`sw.model.presets`: ``preset_config``, ``random_layer``, ``random_model``
"""

from .bitlinear import BitLinear, BitLinearTrace, Core, reference_core
from .checkpoint import CheckpointError, load_checkpoint, model_from_state_dict, save_checkpoint
from .config import ConfigError, ModelConfig
from .layers import DecoderLayer, KVCache
from .model import CausalLM
from .quant import act_quant, epilogue, ternary_matmul, weight_quant

__all__ = [
    "BitLinear", "BitLinearTrace", "Core", "reference_core",
    "CheckpointError", "load_checkpoint", "model_from_state_dict", "save_checkpoint",
    "ConfigError", "ModelConfig", "DecoderLayer", "KVCache", "CausalLM",
    "act_quant", "epilogue", "ternary_matmul", "weight_quant",
]
