"""Hugging Face models from their configuration alone: no weights, no network.

``load(source)`` reads a configuration (a directory holding ``config.json``, a ``config.json`` file, a model id
already in the local Hugging Face cache, or a ``PretrainedConfig``) and builds the model on the meta device with
``from_config``, so even a 70-billion-parameter model allocates nothing. The returned :class:`HFModel` knows the
inputs of each phase: a prompt of token ids (prefill) and one new token against a real HF ``DynamicCache`` of
earlier tokens (decode). ``transformers`` is an optional dependency (``pip install 'flopcalc[hf]'``).

Mixture-of-experts layers are built with transformers' ``batched_mm`` experts implementation: every token runs
through exactly its top-k experts with no data-dependent control flow, so the routed cost can be counted on the
meta device; the default implementations pick experts by tensor values, which shapes alone cannot decide.
"""

from __future__ import annotations

import contextlib
import copy
import difflib
import inspect
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from flopcalc.errors import InputError, UnknownModelError
from flopcalc.inputs import Dim, DimResolver, InputSpec, ModelInputs

INSTALL_HINT = "pip install 'flopcalc[hf]'"
ATTENTION_IMPLEMENTATIONS = ("sdpa", "eager")
MOE_EXPERTS_IMPLEMENTATION = "batched_mm"


def _transformers() -> Any:
    try:
        import transformers
    except ImportError:
        raise InputError(f"hf: models need the transformers package, which is not installed ({INSTALL_HINT})") from None
    return transformers


@contextlib.contextmanager
def _quiet(transformers: Any) -> Iterator[None]:
    """Keep transformers' informational logging (generation-config dumps, deprecation notes) off stderr."""
    logging = transformers.utils.logging
    level = logging.get_verbosity()
    logging.set_verbosity_error()
    try:
        yield
    finally:
        logging.set_verbosity(level)


@dataclass(frozen=True)
class KVCacheSpec(InputSpec):
    """A ``DynamicCache`` already holding ``shape[2]`` tokens, built like any other input (so the context length
    may be a name). ``shape`` is layer 0's key shape ``(batch, kv_heads, tokens, head_dim)``; ``layers`` holds,
    per layer, ``(kv_heads, key_dim, value_dim)`` as the model's own cache reported them."""

    layers: tuple[tuple[int, int, int], ...] = ()
    config: Any = None

    def make(
        self, device: torch.device | str, resolve: DimResolver | None = None, generator: torch.Generator | None = None
    ) -> Any:
        from transformers import DynamicCache

        batch, _, tokens, _ = self.shape
        cache = DynamicCache(config=self.config)
        for index, (kv_heads, key_dim, value_dim) in enumerate(self.layers):
            keys = InputSpec((batch, kv_heads, tokens, key_dim), self.dtype).make(device, resolve, generator)
            values = InputSpec((batch, kv_heads, tokens, value_dim), self.dtype).make(device, resolve, generator)
            cache.update(keys, values, index)
        return cache


@dataclass(frozen=True)
class CacheLayout:
    """What one token adds to the model's KV cache, per layer: ``(kv_heads, key_dim, value_dim)``."""

    layers: tuple[tuple[int, int, int], ...]
    dtype: torch.dtype

    @property
    def elements_per_token(self) -> int:
        return sum(heads * (key_dim + value_dim) for heads, key_dim, value_dim in self.layers)

    @property
    def bytes_per_token(self) -> int:
        return self.elements_per_token * self.dtype.itemsize


@dataclass(frozen=True)
class HFModel:
    """A transformers model built from its config on the meta device, with the inputs of each phase."""

    model: nn.Module
    config: Any
    source: str

    @property
    def name(self) -> str:
        return type(self.model).__name__

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    @property
    def is_encoder_decoder(self) -> bool:
        return bool(getattr(self.config, "is_encoder_decoder", False))

    def prefill_inputs(self, seq: Dim, batch: Dim = 1) -> ModelInputs:
        """Token ids of ``batch`` sequences of ``seq`` tokens (an encoder-decoder gets the same length on both
        sides). Either size may be a name for a closed form."""
        ids = InputSpec((batch, seq), torch.int64)
        kwargs: dict[str, Any] = {"input_ids": ids}
        if self.is_encoder_decoder:
            kwargs["decoder_input_ids"] = ids
        return ModelInputs((), kwargs)

    def decode_inputs(self, context: Dim, batch: Dim = 1) -> ModelInputs:
        """One new token per sequence, attending to a ``DynamicCache`` of ``context`` earlier tokens."""
        layout = self.cache_layout()
        if layout is None:
            raise InputError(
                f"{self.name} keeps no self-attention KV cache (an encoder or encoder-decoder model); "
                "--decode needs a decoder-only model such as GPT-2 or Llama"
            )
        heads, key_dim, _ = layout.layers[0]
        cache = KVCacheSpec((batch, heads, context, key_dim), layout.dtype, layers=layout.layers, config=self.config)
        name = "cache" if "cache" in _forward_parameters(self.model) else "past_key_values"
        return ModelInputs((), {"input_ids": InputSpec((batch, 1), torch.int64), name: cache, "use_cache": True})

    def cache_layout(self) -> CacheLayout | None:
        """The KV cache one token leaves behind, read from the model's own ``DynamicCache`` after a one-token
        forward pass on the meta device (so key and value widths are the model's, not derived from its config).
        ``None`` for a model that returns no such cache."""
        if self.is_encoder_decoder or "use_cache" not in _forward_parameters(self.model):
            return None
        ids = torch.zeros((1, 1), dtype=torch.int64, device="meta")
        flags = [(m, m.training) for m in self.model.modules()]
        transformers = _transformers()
        try:
            self.model.eval()
            with torch.no_grad(), _quiet(transformers):
                output = self.model(input_ids=ids, use_cache=True)
                cache = getattr(output, "cache", None) or getattr(output, "past_key_values", None)
        except Exception:  # a model that cannot run one token alone has no usable cache layout
            return None
        finally:
            for module, flag in flags:
                module.training = flag
        layers = getattr(cache, "layers", None)
        if not layers:
            return None
        shapes = []
        for layer in layers:
            keys, values = getattr(layer, "keys", None), getattr(layer, "values", None)
            if not isinstance(keys, torch.Tensor) or not isinstance(values, torch.Tensor) or keys.dim() != 4:
                return None
            shapes.append((int(keys.shape[1]), int(keys.shape[-1]), int(values.shape[-1])))
        return CacheLayout(tuple(shapes), keys.dtype)


def _forward_parameters(model: nn.Module) -> Mapping[str, Any]:
    return inspect.signature(model.forward).parameters


def _read_config(source: str, transformers: Any) -> Any:
    """The configuration that ``source`` names, without any network access."""
    path = Path(source).expanduser()
    if path.is_dir():
        file = path / "config.json"
        if not file.is_file():
            raise UnknownModelError(f"hf:{source}: the directory has no config.json; give a directory holding one, "
                                    "a config.json file, or a model id in the local Hugging Face cache")
        return _config_from_file(file, transformers)
    if path.is_file():
        return _config_from_file(path, transformers)
    if source.endswith(".json") or source.startswith((".", "/", "~")):
        raise UnknownModelError(f"hf:{source}: no such file or directory; give a directory holding config.json, "
                                "a config.json file, or a model id in the local Hugging Face cache")
    try:
        with _quiet(transformers):
            return transformers.AutoConfig.from_pretrained(source, local_files_only=True)
    except (OSError, ValueError):
        raise UnknownModelError(
            f"hf:{source}: not a directory or file, and not a model id in the local Hugging Face cache "
            "(nothing is downloaded: fetch its config.json first, or give the path of a config.json)"
        ) from None


def _config_from_file(file: Path, transformers: Any) -> Any:
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UnknownModelError(f"{file}: not a readable JSON config ({exc})") from None
    if not isinstance(data, dict) or "model_type" not in data:
        raise UnknownModelError(f"{file}: no model_type; a transformers config.json names its model_type, e.g. llama")
    model_type = data.pop("model_type")
    known = transformers.CONFIG_MAPPING
    if model_type not in known:
        close = difflib.get_close_matches(str(model_type), list(known.keys()), n=3, cutoff=0.6)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise UnknownModelError(
            f"{file}: unknown architecture model_type={model_type!r} for transformers "
            f"{transformers.__version__}{hint} (custom-code models are not run)"
        )
    with _quiet(transformers):
        return known[model_type].from_dict(data)


def _model_class(config: Any, transformers: Any) -> Any:
    """The class to build: the config's first ``architectures`` entry when transformers has it; otherwise a
    causal LM (sequence-to-sequence LM for encoder-decoders), and the bare model for encoders such as BERT."""
    for name in getattr(config, "architectures", None) or ():
        klass = getattr(transformers, name, None)
        if isinstance(klass, type) and issubclass(klass, transformers.PreTrainedModel):
            return klass
    kind = type(config)
    if getattr(config, "is_encoder_decoder", False) and kind in transformers.MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING:
        return transformers.AutoModelForSeq2SeqLM
    encoder = kind in transformers.MODEL_FOR_MASKED_LM_MAPPING and not getattr(config, "is_decoder", False)
    if kind in transformers.MODEL_FOR_CAUSAL_LM_MAPPING and not encoder:
        return transformers.AutoModelForCausalLM
    if kind in transformers.MODEL_MAPPING:
        return transformers.AutoModel
    raise UnknownModelError(f"transformers has no model class for config {kind.__name__}")


def load(
    source: str | Path | Any, *, dtype: torch.dtype | str | None = None, attention: str = "sdpa"
) -> HFModel:
    """Build the model a Hugging Face config describes, on the meta device, without weights or network.

    Args:
        source: a directory holding ``config.json``, a config JSON file, a model id in the local HF cache, or a
            ``transformers.PretrainedConfig`` (copied, never modified).
        dtype: the parameter dtype (default: the config's ``dtype``/``torch_dtype``, else float32); it also sets
            the KV-cache element size.
        attention: ``"sdpa"`` (default) or ``"eager"``; both give the same counts.

    Raises:
        InputError: transformers is not installed, or ``dtype``/``attention`` is not one flopcalc knows.
        UnknownModelError: no such path or cached model id, an unknown architecture, or a failing build.
    """
    transformers = _transformers()
    if attention not in ATTENTION_IMPLEMENTATIONS:
        known = " or ".join(ATTENTION_IMPLEMENTATIONS)
        raise InputError(f"unknown attention implementation {attention!r}; use {known}")
    if isinstance(source, transformers.PretrainedConfig):
        config, label = copy.deepcopy(source), None
    else:
        config, label = _read_config(str(source), transformers), str(source)
    kwargs: dict[str, Any] = {"attn_implementation": attention}
    if dtype is not None:
        kwargs["dtype"] = _dtype(dtype)
    elif getattr(config, "dtype", None) in (None, "auto"):
        kwargs["dtype"] = torch.float32
    klass = _model_class(config, transformers)
    if _has_fused_experts(klass, config):
        kwargs["experts_implementation"] = MOE_EXPERTS_IMPLEMENTATION
    try:
        with _quiet(transformers), torch.device("meta"):
            builder = klass.from_config if hasattr(klass, "from_config") else klass._from_config
            model = builder(config, **kwargs)
    except Exception as exc:
        message = " ".join(str(exc).split())[:300]
        where = f"hf:{label}" if label else "the given config"
        raise UnknownModelError(
            f"building {klass.__name__} from {where} failed: {type(exc).__name__}: {message}"
        ) from exc
    return HFModel(model, model.config, label or type(model).__name__)


def _has_fused_experts(klass: Any, config: Any) -> bool:
    """Whether the model's experts use transformers' switchable experts implementations (Mixtral, Qwen-MoE)."""
    experts = getattr(config, "num_local_experts", None) or getattr(config, "num_experts", None)
    if not experts:
        return False
    target = klass
    if not hasattr(klass, "_can_set_experts_implementation"):  # an Auto class: find the concrete one
        mapping = getattr(klass, "_model_mapping", None)
        target = mapping[type(config)] if mapping is not None and type(config) in mapping else None
    return bool(target is not None and target._can_set_experts_implementation())


def _dtype(value: torch.dtype | str) -> torch.dtype:
    if isinstance(value, torch.dtype):
        return value
    found = getattr(torch, str(value), None)
    if not isinstance(found, torch.dtype) or not found.is_floating_point:
        raise InputError(f"unknown dtype {value!r}; use a floating-point dtype such as float32, bfloat16 or float16")
    return found

