"""Derived output metadata (flopcalc/measure/derive.py): the same sizes, strides, storage, dtype and ShapeEnv as
torch's fake kernels, checked against the kernel itself, never against a value the derivation computed."""

from __future__ import annotations

import sys

import pytest
import torch

from flopcalc.measure import derive
from flopcalc.measure.derive import DerivedOutputs, checked
from flopcalc.symbolic import SymbolicShapes

aten = torch.ops.aten


def _layouts(shapes: SymbolicShapes) -> dict[str, torch.Tensor]:
    """Fake meta tensors over a symbolic S of the layouts a transformer makes: contiguous, transposed, a slice of the
    last dimension, an expanded size-1 dimension, a 0-dim scalar, other dtypes."""
    s = shapes.symint("S")
    with shapes.fake_mode, torch.device("meta"):  # flopcalc's passes run on meta
        q = torch.empty(1, s, 8, 64).transpose(1, 2)  # (1, 8, S, 64), strides (512·S, 64, 512, 1)
        return {
            "contiguous": torch.empty(1, s, 512),
            "column": torch.empty(1, s, 1),
            "row": torch.empty(512),
            "transposed": q,
            "half": q[..., :32],
            "rotary": torch.empty(1, 1, s, 64),
            "square": torch.empty(s, s),
            "bool_square": torch.empty(s, s, dtype=torch.bool),
            "scalar": torch.empty(()),
            "bf16": torch.empty(1, s, 512, dtype=torch.bfloat16),
            "long": torch.empty(1, s, dtype=torch.long),
            "scores": torch.empty(1, 8, s, s),
            "key_t": torch.empty(1, 8, s, 64).transpose(-2, -1),  # (1, 8, 64, S)
        }


ELEMENTWISE = [
    (aten.add.Tensor, ("contiguous", "contiguous")), (aten.add.Tensor, ("transposed", "transposed")),
    (aten.mul.Tensor, ("transposed", "rotary")), (aten.mul.Tensor, ("contiguous", "column")),
    (aten.mul.Tensor, ("row", "contiguous")), (aten.mul.Tensor, ("column", "row")),
    (aten.mul.Tensor, ("bf16", "contiguous")), (aten.add.Tensor, ("scores", "square")),
    (aten.add.Tensor, ("half", "half")), (aten.sub.Tensor, ("contiguous", "scalar")),
    (aten.div.Tensor, ("long", "long")), (aten.neg.default, ("half",)), (aten.neg.default, ("transposed",)),
    (aten.rsqrt.default, ("column",)), (aten.silu.default, ("bf16",)), (aten.sigmoid.default, ("long",)),
    (aten.where.self, ("bool_square", "scalar", "scalar")), (aten.eq.Tensor, ("half", "half")),
    (aten.maximum.default, ("transposed", "rotary")),
]
SCALAR_OPS = [
    (aten.mul.Scalar, "key_t", 0.125), (aten.mul.Scalar, "long", 0.5), (aten.add.Scalar, "half", 1),
    (aten.pow.Tensor_Scalar, "contiguous", 2), (aten.pow.Tensor_Scalar, "long", 2), (aten.eq.Scalar, "long", 0),
]


def _derived_and_checked(shapes: SymbolicShapes, op, args, kwargs=None) -> torch.Tensor:
    kwargs = kwargs or {}
    derived = DerivedOutputs().output(op, args, kwargs)
    assert derived is not None, f"{op} was not derived for {[getattr(a, 'shape', a) for a in args]}"
    with shapes.fake_mode:
        return checked(op, args, kwargs, derived)  # raises unless the kernel gives the same metadata and guards


@pytest.mark.parametrize(("op", "names"), ELEMENTWISE, ids=lambda v: str(v))
def test_elementwise_outputs_have_the_kernels_metadata(op, names):
    shapes = SymbolicShapes()
    tensors = _layouts(shapes)
    _derived_and_checked(shapes, op, [tensors[n] for n in names])


@pytest.mark.parametrize(("op", "name", "scalar"), SCALAR_OPS, ids=lambda v: str(v))
def test_elementwise_with_a_python_scalar(op, name, scalar):
    shapes = SymbolicShapes()
    _derived_and_checked(shapes, op, [_layouts(shapes)[name], scalar])


@pytest.mark.parametrize("name", ["contiguous", "transposed", "half", "bf16", "long", "key_t"])
def test_dtype_conversion(name):
    shapes = SymbolicShapes()
    tensor = _layouts(shapes)[name]
    target = torch.float16 if tensor.dtype != torch.float16 else torch.float32
    out = _derived_and_checked(shapes, aten._to_copy.default, [tensor], {"dtype": target})
    assert out.dtype == target


@pytest.mark.parametrize(("op", "args"), [
    (aten.tril.default, ("bool_square",)), (aten.triu.default, ("square", 1)),
    (aten._safe_softmax.default, ("scores", -1)), (aten._softmax.default, ("scores", -1, False)),
])
def test_same_shape_ops(op, args):
    shapes = SymbolicShapes()
    tensors = _layouts(shapes)
    _derived_and_checked(shapes, op, [tensors[a] if isinstance(a, str) else a for a in args])


def test_views():
    shapes = SymbolicShapes()
    t = _layouts(shapes)
    s = shapes.symint("S")
    cases = [
        (aten.view.default, [t["contiguous"], [s, 512]]), (aten.view.default, [t["contiguous"], [1, s, -1, 64]]),
        (aten.view.default, [t["contiguous"], [-1, 512]]), (aten.view.default, [t["transposed"], [8, s, 64]]),
        (aten.view.default, [t["contiguous"], [1, s, 512]]), (aten.view.default, [t["contiguous"], [1, s, 512, 1]]),
        (aten._unsafe_view.default, [t["contiguous"], [s, 8, 64]]), (aten.view.default, [t["key_t"], [8, 64, s]]),
        (aten.transpose.int, [t["transposed"], 1, 2]), (aten.transpose.int, [t["key_t"], -2, -1]),
        (aten.unsqueeze.default, [t["contiguous"], 2]), (aten.unsqueeze.default, [t["half"], -1]),
        (aten.unsqueeze.default, [t["transposed"], 0]),
        (aten.expand.default, [t["rotary"], [1, 8, s, 64]]), (aten.expand.default, [t["column"], [2, 1, s, 7]]),
        (aten.expand.default, [t["transposed"], [1, 8, -1, 64]]),
        (aten.slice.Tensor, [t["transposed"], 3, 0, 32]), (aten.slice.Tensor, [t["transposed"], 3, 32, sys.maxsize]),
        (aten.slice.Tensor, [t["contiguous"], 1, 0, sys.maxsize]), (aten.slice.Tensor, [t["half"], -1, 4, -4]),
    ]
    for op, args in cases:
        out = _derived_and_checked(shapes, op, args)
        assert out.untyped_storage()._cdata == args[0].untyped_storage()._cdata  # a view of its argument


def test_undecidable_or_unknown_runs_are_left_to_the_kernel():
    shapes = SymbolicShapes()
    t = _layouts(shapes)
    s, other = shapes.symint("S"), shapes.symint("T")
    with shapes.fake_mode:
        unrelated = torch.empty(1, other, 512, device="meta")
    derived = DerivedOutputs()
    assert derived.output(aten.add.Tensor, [t["contiguous"], unrelated], {}) is None  # S vs T: not provably equal
    assert derived.output(aten.add.Tensor, [t["contiguous"], t["contiguous"]], {"alpha": 2}) is None
    assert derived.output(aten.cat.default, [[t["half"], t["half"]], -1], {}) is None  # no rule
    assert derived.output(aten.view.default, [t["transposed"], [8, -1]], {}) is None  # a copying reshape
    assert derived.output(aten.add.Tensor, [torch.empty(2, 3, device="meta")] * 2, {}) is None  # not fake
    assert derived.output(aten.view.default, [t["contiguous"], [s, 511]], {}) is None  # wrong element count
    assert not shapes.shape_env.guards  # asking added no guard


def test_a_wrong_derivation_is_caught_by_the_check(monkeypatch):
    shapes = SymbolicShapes()
    t = _layouts(shapes)
    fresh = derive._fresh
    monkeypatch.setattr(derive, "_fresh", lambda mode, device, sizes, strides, dtype:
                        fresh(mode, device, sizes, strides, torch.float64))
    derived = DerivedOutputs().output(aten.neg.default, [t["contiguous"]], {})
    with shapes.fake_mode, pytest.raises(AssertionError, match="differs from its kernel's"):
        checked(aten.neg.default, [t["contiguous"]], {}, derived)


@pytest.fixture
def derivations(monkeypatch) -> list[str]:
    """Every op whose output was derived during the test, with the check on."""
    seen: list[str] = []
    output = DerivedOutputs.output

    def spy(self, func, args, kwargs):
        out = output(self, func, args, kwargs)
        if out is not None:
            seen.append(str(func))
        return out

    monkeypatch.setattr(DerivedOutputs, "output", spy)
    with derive.checking():
        yield seen


@pytest.mark.parametrize(("config", "per_s2", "per_s", "constant"), [
    # GPT-2: 12 layers · 2 · 12 heads · 64 = 18,432·S² scores; 123,532,032 per token (tests/test_hf_models.py)
    ("GPT2Config", 18_432, 123_532_032, 0),
    # BERT-base: 18,432·S²; 28,311,552 + 56,623,104 = 84,934,656 per token; the pooler 768·768 = 589,824 once
    ("BertConfig", 18_432, 84_934_656, 589_824),
    # T5-small: encoder, decoder self and cross 3 · 6 · 2 · 512 = 18,432·S²; 18,874,368 + 25,165,824 +
    # 16,449,536 = 60,489,728 per token
    ("T5Config", 18_432, 60_489_728, 0),
    # the Llama of examples/llama-gqa (tests/test_hf.py): 2,048·S² + 21,921,792·S
    ("LlamaConfig", 2_048, 21_921_792, 0),
])
def test_language_model_closed_forms_with_every_derivation_checked(derivations, config, per_s2, per_s, constant):
    transformers = pytest.importorskip("transformers")
    from flopcalc import hf, llm

    kwargs = (dict(hidden_size=512, num_hidden_layers=2, num_attention_heads=8, num_key_value_heads=2,
                   intermediate_size=1376, vocab_size=32000) if config == "LlamaConfig" else {})
    model = hf.load(getattr(transformers, config)(**kwargs))
    report = llm.prefill(model, "S").report
    for seq in (2, 77, 500):  # BERT holds up to its 512 positions
        assert report.evaluate(S=seq)["macs"] == per_s2 * seq**2 + per_s * seq + constant
    assert len(derivations) >= 20  # the rules did apply, each checked against its kernel
    assert {"aten.view.default", "aten.transpose.int", "aten.add.Tensor"} <= set(derivations)
