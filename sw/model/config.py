"""Model shape and hyper-parameters of a BitNet b1.58 causal LM (frozen, validated).

Two architecture families (see docs/MODEL.md):

- ``bitnet`` — Hugging Face ``BitNetForCausalLM`` (microsoft/bitnet-b1.58-2B-4T): sub-norms
  (``attn_sub_norm`` before ``o_proj``, ``ffn_sub_norm`` before ``down_proj``), ``hidden_act`` relu2.
- ``llama`` — the LLaMA-style 1bitLLM reproductions (``model_type: llama``,
  ``architectures: [BitnetForCausalLM]``): a plain LLaMA block whose seven projections are BitLinear,
  SwiGLU (``hidden_act`` silu), **no** sub-norms (their checkpoints have no sub-norm tensors and their
  ``modeling_bitnet.py`` is transformers' llama code with BitLinear swapped in).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional

from hw.config import check_int, is_int

__all__ = ["ModelConfig", "ConfigError", "SUPPORTED_ACTS"]

SUPPORTED_ACTS = ("relu2", "silu")


class ConfigError(ValueError):
    """A bad or unsupported model configuration (one line, names the field)."""


@dataclass(frozen=True)
class ModelConfig:
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: Optional[int] = None          # None: hidden_size // num_attention_heads
    max_position_embeddings: int = 2048
    rms_norm_eps: float = 1e-5
    rope_theta: float = 10000.0
    hidden_act: str = "relu2"
    sub_norms: bool = True                  # attn_sub_norm / ffn_sub_norm (bitnet family)
    tie_word_embeddings: bool = False
    bos_token_id: Optional[int] = None
    eos_token_id: tuple[int, ...] = field(default=())
    pad_token_id: Optional[int] = None
    model_type: str = "bitnet"              # "bitnet" or "llama"

    def __post_init__(self):
        if self.head_dim is None and is_int(self.hidden_size) and is_int(self.num_attention_heads) \
                and self.num_attention_heads > 0:
            object.__setattr__(self, "head_dim", self.hidden_size // self.num_attention_heads)
        eos = self.eos_token_id
        if eos is None:
            eos = ()
        elif is_int(eos):
            eos = (eos,)
        elif isinstance(eos, (list, tuple)):
            eos = tuple(eos)
        object.__setattr__(self, "eos_token_id", eos)
        self.validate()

    # -- validation ---------------------------------------------------------------------------
    def validate(self) -> None:
        for name in ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                     "num_attention_heads", "num_key_value_heads", "head_dim", "max_position_embeddings"):
            check_int(name, getattr(self, name), 1, error=ConfigError)
        if self.num_attention_heads % self.num_key_value_heads:
            raise ConfigError(f"num_attention_heads={self.num_attention_heads} must be a multiple of "
                              f"num_key_value_heads={self.num_key_value_heads}")
        if self.head_dim % 2:
            raise ConfigError(f"head_dim={self.head_dim} must be even (RoPE rotates half-split pairs)")
        for name in ("rms_norm_eps", "rope_theta"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
                raise ConfigError(f"{name}={v!r} must be a finite number > 0")
        if self.hidden_act not in SUPPORTED_ACTS:
            raise ConfigError(f"hidden_act={self.hidden_act!r} is not supported (use one of {SUPPORTED_ACTS})")
        if self.model_type not in ("bitnet", "llama"):
            raise ConfigError(f"model_type={self.model_type!r} is not supported (use 'bitnet' or 'llama')")
        for name in ("sub_norms", "tie_word_embeddings"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name}={getattr(self, name)!r} must be a bool")
        for name in ("bos_token_id", "pad_token_id"):
            if getattr(self, name) is not None:
                check_int(f"{name} (a token id)", getattr(self, name), 0, self.vocab_size - 1,
                          error=ConfigError)
        for v in self.eos_token_id:
            check_int("eos_token_id (a token id)", v, 0, self.vocab_size - 1, error=ConfigError)

    # -- derived ------------------------------------------------------------------------------
    @property
    def q_size(self) -> int:
        return self.num_attention_heads * self.head_dim

    @property
    def kv_size(self) -> int:
        return self.num_key_value_heads * self.head_dim

    def projection_shapes(self) -> dict[str, tuple[int, int]]:
        """``{suffix: (out_features, in_features)}`` of the seven BitLinear projections of a layer."""
        h, i = self.hidden_size, self.intermediate_size
        return {
            "self_attn.q_proj": (self.q_size, h),
            "self_attn.k_proj": (self.kv_size, h),
            "self_attn.v_proj": (self.kv_size, h),
            "self_attn.o_proj": (h, self.q_size),
            "mlp.gate_proj": (i, h),
            "mlp.up_proj": (i, h),
            "mlp.down_proj": (h, i),
        }

    def replace(self, **changes) -> "ModelConfig":
        return dataclasses.replace(self, **changes)

    # -- Hugging Face config.json -------------------------------------------------------------
    @classmethod
    def from_hf_dict(cls, d: Mapping[str, Any]) -> "ModelConfig":
        """Reads a Hugging Face ``config.json`` dict (``bitnet`` or the 1bitLLM LLaMA-style variant).

        Raises :class:`ConfigError` for unsupported architectures or bad values.
        """
        if not isinstance(d, Mapping):
            raise ConfigError(f"config must be a JSON object, got {type(d).__name__}")
        mt = d.get("model_type")
        archs = d.get("architectures") or []
        if not isinstance(archs, list):
            raise ConfigError(f"architectures={archs!r} must be a list")
        qc = d.get("quantization_config")
        is_bitnet_quant = isinstance(qc, Mapping) and qc.get("quant_method") == "bitnet"
        if mt == "bitnet":
            if archs and "BitNetForCausalLM" not in archs:
                raise ConfigError(f"unsupported architecture {archs!r} for model_type 'bitnet' "
                                  "(expected BitNetForCausalLM)")
            family, sub_norms, default_act = "bitnet", True, "relu2"
        elif mt == "llama":
            if "BitnetForCausalLM" in archs or "BitNetForCausalLM" in archs or (
                    "LlamaForCausalLM" in archs and is_bitnet_quant):
                family, sub_norms, default_act = "llama", False, "silu"
            else:
                raise ConfigError(f"unsupported architecture {archs!r} for model_type 'llama': only the "
                                  "ternary 1bitLLM variant (architectures [BitnetForCausalLM]) or a llama "
                                  "model with a bitnet quantization_config is supported")
        else:
            raise ConfigError(f"unsupported model_type {mt!r} (supported: 'bitnet', 'llama' 1bitLLM variant)")
        if qc is not None:
            if not isinstance(qc, Mapping):
                raise ConfigError(f"quantization_config={qc!r} must be an object")
            if qc.get("quant_method") != "bitnet":
                raise ConfigError(f"unsupported quantization_config.quant_method={qc.get('quant_method')!r} "
                                  "(only 'bitnet')")
            if qc.get("use_rms_norm"):
                raise ConfigError("quantization_config.use_rms_norm=true is not supported")
            lc = qc.get("linear_class", "bitlinear")
            if lc not in ("bitlinear", "autobitlinear"):
                raise ConfigError(f"quantization_config.linear_class={lc!r} is not supported")
            qm = qc.get("quantization_mode", "offline")
            if qm not in ("offline", "online"):
                raise ConfigError(f"quantization_config.quantization_mode={qm!r} is not supported")
            for key in ("quant_method", "linear_class", "quantization_mode"):
                if key in qc and not isinstance(qc[key], str):
                    raise ConfigError(f"quantization_config.{key}={qc[key]!r} must be a string")
            if qc.get("use_rms_norm") is not None and not isinstance(qc["use_rms_norm"], bool):
                raise ConfigError(f"quantization_config.use_rms_norm={qc['use_rms_norm']!r} must be a bool")
            keep = qc.get("modules_to_not_convert")
            if keep is not None and (not isinstance(keep, list) or not all(isinstance(m, str) for m in keep)):
                raise ConfigError(f"quantization_config.modules_to_not_convert={keep!r} must be a list of "
                                  "module names (strings) or null")
            extra = [m for m in (keep or []) if m != "lm_head"]
            if extra:
                raise ConfigError(f"quantization_config.modules_to_not_convert={extra!r}: only lm_head may "
                                  "stay unquantized")
        for flag in ("attention_bias", "mlp_bias"):
            if d.get(flag):
                raise ConfigError(f"{flag}=true is not supported (BitNet projections have no bias)")
        rs = d.get("rope_scaling")
        if rs is not None:
            kind = rs.get("rope_type", rs.get("type")) if isinstance(rs, Mapping) else rs
            if kind != "default":
                raise ConfigError(f"rope_scaling={rs!r} is not supported (only default RoPE)")
        if d.get("pretraining_tp", 1) not in (1, None):
            raise ConfigError(f"pretraining_tp={d.get('pretraining_tp')!r} is not supported")
        for key in ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                    "num_attention_heads"):
            if key not in d:
                raise ConfigError(f"missing required field {key!r}")
        nh = d["num_attention_heads"]
        kv = d.get("num_key_value_heads")
        eos = d.get("eos_token_id")
        if eos is not None and not (is_int(eos) or isinstance(eos, list)):
            raise ConfigError(f"eos_token_id={eos!r} must be an integer or a list of integers")
        defaults = {"bitnet": dict(max_position_embeddings=2048, rms_norm_eps=1e-5, rope_theta=500000.0),
                    "llama": dict(max_position_embeddings=2048, rms_norm_eps=1e-6, rope_theta=10000.0)}[family]
        try:
            return cls(
                vocab_size=d["vocab_size"],
                hidden_size=d["hidden_size"],
                intermediate_size=d["intermediate_size"],
                num_hidden_layers=d["num_hidden_layers"],
                num_attention_heads=nh,
                num_key_value_heads=nh if kv is None else kv,
                head_dim=d.get("head_dim"),
                max_position_embeddings=d.get("max_position_embeddings", defaults["max_position_embeddings"]),
                rms_norm_eps=d.get("rms_norm_eps", defaults["rms_norm_eps"]),
                rope_theta=d.get("rope_theta", defaults["rope_theta"]),
                hidden_act=d.get("hidden_act", default_act),
                sub_norms=sub_norms,
                tie_word_embeddings=d.get("tie_word_embeddings", family == "llama"),
                bos_token_id=d.get("bos_token_id"),
                eos_token_id=eos,
                pad_token_id=d.get("pad_token_id"),
                model_type=family,
            )
        except TypeError as e:  # e.g. a list where a number belongs
            raise ConfigError(str(e)) from None

    def to_hf_dict(self) -> dict[str, Any]:
        """The ``config.json`` contents (without ``quantization_config``) for transformers."""
        d: dict[str, Any] = {
            "architectures": ["BitNetForCausalLM" if self.model_type == "bitnet" else "BitnetForCausalLM"],
            "model_type": self.model_type,
            "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "num_hidden_layers": self.num_hidden_layers,
            "num_attention_heads": self.num_attention_heads,
            "num_key_value_heads": self.num_key_value_heads,
            "head_dim": self.head_dim,
            "max_position_embeddings": self.max_position_embeddings,
            "rms_norm_eps": self.rms_norm_eps,
            "rope_theta": self.rope_theta,
            "hidden_act": self.hidden_act,
            "tie_word_embeddings": self.tie_word_embeddings,
            "attention_bias": False,
            "attention_dropout": 0.0,
            "torch_dtype": "float32",
        }
        if self.model_type == "llama":
            d["mlp_bias"] = False
        d["bos_token_id"] = self.bos_token_id
        d["eos_token_id"] = (self.eos_token_id[0] if len(self.eos_token_id) == 1
                             else list(self.eos_token_id) or None)
        d["pad_token_id"] = self.pad_token_id
        return d
