"""The benchmark's models: three named ones, the torchvision classification zoo, a 6.4B-parameter encoder,
small transformers language models built from a config, and two small hand-written models (recurrent layers,
a module shared by two parents).

Every model is built in eval mode on the device asked for: ``meta`` (shapes only, no weights allocated) for
the tools that can count a meta model, ``cpu`` (real, randomly initialised weights) for the ones that need a
real forward pass. Nothing is downloaded.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
import torchvision
from torch import nn

NAMED = ("resnet50", "vit_b_16", "convnext_tiny")

ENCODER = "encoder_6b"
"""nn.TransformerEncoder, d_model 4096, 32 heads, ffn 16384, 32 layers, on a 1 x 128 token sequence."""

ENCODER_SHAPE = (1, 128, 4096)

_NATIVE_RESOLUTION = {"inception_v3": 299}
"""Models whose documented input is not 224 x 224."""

class TokenShape(tuple):
    """The shape of an input of int64 token ids (a language model's), where other inputs are float tensors."""


TOKENS = TokenShape((1, 128))
"""The input of a language model: one sequence of 128 token ids."""

HF_CONFIGS: dict[str, dict] = {
    "hf_gpt2_2l": {"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "n_layer": 2},
    "hf_bert_small": {"architectures": ["BertModel"], "model_type": "bert", "hidden_size": 256,
                      "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 1024},
    "hf_llama_gqa": {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 512,
                     "intermediate_size": 1376, "num_hidden_layers": 2, "num_attention_heads": 8,
                     "num_key_value_heads": 2, "vocab_size": 32000, "tie_word_embeddings": False},
}
"""transformers models from a config (the library's defaults for everything not given), randomly initialised.
A prefill as flopcalc's ``hf:`` counts it: the token ids alone, the config's default ``use_cache``."""


class RecurrentStack(nn.Module):
    """Every recurrent kind the peers have a rule for: a 2-layer LSTM with projections, a bidirectional GRU,
    an RNN and an LSTM cell on the last step, then a linear head. Input: batch x 16 steps x 32 features."""

    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(32, 48, num_layers=2, proj_size=24, batch_first=True)
        self.gru = nn.GRU(24, 32, bidirectional=True, batch_first=True)
        self.rnn = nn.RNN(64, 40, batch_first=True)
        self.cell = nn.LSTMCell(40, 20)
        self.head = nn.Linear(20, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, _ = self.lstm(x)
        x, _ = self.gru(x)
        x, _ = self.rnn(x)
        hidden, _ = self.cell(x[:, -1])
        return self.head(hidden)


class SharedModule(nn.Module):
    """One Linear held by two parents (two Sequentials), each of which calls it once: counters that sum
    their totals parent by parent count its two calls twice. Input: batch x 64."""

    def __init__(self) -> None:
        super().__init__()
        shared = nn.Linear(64, 64)
        self.first = nn.Sequential(shared, nn.ReLU())
        self.second = nn.Sequential(shared, nn.ReLU())
        self.head = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.second(self.first(x)))


SMALL = {"recurrent_stack": (RecurrentStack, (2, 16, 32)), "shared_module": (SharedModule, (4, 64))}
"""Small hand-written models for the rules no torchvision model exercises, with their inputs."""


def zoo() -> list[str]:
    """Every classification model torchvision ships (80 in torchvision 0.29)."""
    return sorted(torchvision.models.list_models(module=torchvision.models))


def is_language_model(name: str) -> bool:
    """``name`` takes token ids (int64) rather than a float tensor."""
    return name in HF_CONFIGS


def input_shape(name: str) -> tuple[int, ...]:
    """The input a user would count ``name`` at, batch 1 included."""
    if name == ENCODER:
        return ENCODER_SHAPE
    if is_language_model(name):
        return TOKENS
    if name in SMALL:
        return SMALL[name][1]
    side = _NATIVE_RESOLUTION.get(name, 224)
    return (1, 3, side, side)


def build(name: str, device: str) -> nn.Module:
    """``name`` (a torchvision model or :data:`ENCODER`) with its parameters on ``device``, in eval mode."""
    try:
        with torch.device(device):
            return _construct(name).eval()
    except NotImplementedError:  # a constructor that computes with tensors cannot run on a meta default device
        if device != "meta":
            raise
    with _weights_on_meta():
        return _construct(name).eval()


def flopcalc_input(name: str) -> object:
    """What ``flopcalc.analyze`` takes for ``name``'s input: its shape, or an int64 spec for token ids."""
    shape = input_shape(name)
    if isinstance(shape, TokenShape):
        from flopcalc import InputSpec

        return [InputSpec(tuple(shape), torch.int64)]
    return shape


def hf_config(name: str):  # noqa: ANN201  (a transformers PretrainedConfig; transformers is imported lazily)
    """The transformers config of a language model of :data:`HF_CONFIGS`, float32, SDPA attention."""
    import transformers

    data = dict(HF_CONFIGS[name])
    config = transformers.CONFIG_MAPPING[data.pop("model_type")].from_dict(data)
    config._attn_implementation = "sdpa"
    return config


def _construct(name: str) -> nn.Module:
    if is_language_model(name):
        import transformers

        config = hf_config(name)
        return getattr(transformers, config.architectures[0])._from_config(config, dtype=torch.float32)
    if name in SMALL:
        return SMALL[name][0]()
    if name == ENCODER:
        layer = nn.TransformerEncoderLayer(d_model=4096, nhead=32, dim_feedforward=16384, batch_first=True)
        return nn.TransformerEncoder(layer, num_layers=32)
    return torchvision.models.get_model(name)


@contextlib.contextmanager
def _weights_on_meta() -> Iterator[None]:
    """Move every parameter and buffer to meta as it is registered, so that initialisation runs on meta.

    For models whose constructor computes with tensors (regnet's ``BlockParams`` calls ``.tolist()``), which
    fails when meta is the default device. Each tensor is created empty on the CPU first and dropped at once.
    """
    register_parameter, register_buffer = nn.Module.register_parameter, nn.Module.register_buffer

    def parameter(module: nn.Module, name: str, param: nn.Parameter | None) -> None:
        if param is not None:
            param = nn.Parameter(param.to("meta"), requires_grad=param.requires_grad)
        register_parameter(module, name, param)

    def buffer(module: nn.Module, name: str, tensor: torch.Tensor | None, persistent: bool = True) -> None:
        register_buffer(module, name, None if tensor is None else tensor.to("meta"), persistent)

    nn.Module.register_parameter, nn.Module.register_buffer = parameter, buffer  # type: ignore[method-assign]
    try:
        yield
    finally:
        nn.Module.register_parameter, nn.Module.register_buffer = register_parameter, register_buffer  # type: ignore[method-assign]
