"""GPT-2 small, BERT-base, T5-small and a small Mixtral from their configs: parameters and MACs by hand.

Each model is built on the meta device from a transformers config object (defaults of GPT2Config, BertConfig
and T5Config are the published small/base sizes). Hand formulas per token use the real widths: projections
with the KV width and head_dim, the MLP with its real number of matrices, attention 2·S²·heads·head_dim per
layer, and the LM head.
"""

from __future__ import annotations

import pytest

transformers = pytest.importorskip("transformers")

from flopcalc import hf, llm  # noqa: E402

S = 128


def test_gpt2_small():
    model = hf.load(transformers.GPT2Config())
    # wte 50257·768 = 38,597,376; wpe 1024·768 = 786,432; per layer: ln_1 1,536, c_attn 768·2304 + 2304 =
    # 1,771,776, attn c_proj 768·768 + 768 = 590,592, ln_2 1,536, c_fc 768·3072 + 3072 = 2,362,368, mlp c_proj
    # 3072·768 + 768 = 2,360,064: 7,087,872 · 12 = 85,054,464; ln_f 1,536; LM head tied to wte.
    summary = llm.summarize(model, seq=S, context=1000)
    assert summary.params == 38_597_376 + 786_432 + 85_054_464 + 1_536 == 124_439_808 == model.model.num_parameters()
    assert summary.non_embedding_params == 124_439_808 - 38_597_376 - 786_432  # 85,056,000
    assert summary.attention.kind == "MHA"
    # per token: 12 · (768·2304 + 768·768) = 28,311,552 projections; 12 · 2·768·3072 = 56,623,104 MLP;
    # 768·50257 = 38,597,376 LM head; scores 12 layers · 2 · S² · 12 heads · 64 = 18,432·S².
    prefill = summary.prefill
    assert prefill.split == {
        "attention scores": 18_432 * S**2, "attention projections": 28_311_552 * S, "MLP": 56_623_104 * S,
        "LM head": 38_597_376 * S, "other": 0,
    }
    assert prefill.report.totals.macs == 18_432 * S**2 + 123_532_032 * S == 16_114_089_984
    # decode: every linear once, attention over 1000 + 1 keys: 12 · 2 · 1001 · 768 = 18,450,432
    assert summary.decode.report.totals.macs == 123_532_032 + 18_450_432
    assert summary.cache.bytes_per_token == 2 * 12 * 12 * 64 * 4  # K and V · layers · heads · head_dim · 4 B
    assert not prefill.report.uncounted and not prefill.report.mismatches
    # the attention products are functional rows (torch.matmul under GPT2Attention), so every MAC is checked
    assert prefill.report.totals.checked.macs == prefill.report.totals.macs


def test_bert_base_encoder():
    model = hf.load(transformers.BertConfig())
    assert model.name == "BertModel"  # an encoder without architectures: the bare model
    # word 30522·768 = 23,440,896; position 512·768 = 393,216; token type 2·768 = 1,536; embedding LN 1,536;
    # per layer: q, k, v, o 4·(768·768 + 768) = 2,362,368, 2 LNs 3,072, intermediate 768·3072 + 3072 =
    # 2,362,368, output 3072·768 + 768 = 2,360,064: 7,087,872 · 12 = 85,054,464; pooler 768·768 + 768 = 590,592.
    summary = llm.summarize(model, seq=S)
    assert summary.params == 23_440_896 + 393_216 + 1_536 + 1_536 + 85_054_464 + 590_592 == 109_482_240
    assert summary.params == model.model.num_parameters()
    assert summary.non_embedding_params == 109_482_240 - 23_440_896 - 393_216 - 1_536  # 85,646,592
    assert summary.cache is None
    # per token: 12 · 4·768·768 = 28,311,552 projections, 12 · 2·768·3072 = 56,623,104 MLP; scores 18,432·S²;
    # the pooler reads the first token only: 768·768 = 589,824 once per sequence ("other").
    assert summary.prefill.split == {
        "attention scores": 18_432 * S**2, "attention projections": 28_311_552 * S, "MLP": 56_623_104 * S,
        "LM head": 0, "other": 589_824,
    }
    assert summary.prefill.report.totals.macs == 11_174_215_680  # 301,989,888 + 10,871,635,968 + 589,824
    assert summary.prefill.report.totals.checked.macs == 11_174_215_680  # SDPA a functional row, checked


def test_bert_eager_equals_sdpa():
    eager = llm.prefill(hf.load(transformers.BertConfig(num_hidden_layers=2), attention="eager"), 32).report.totals
    sdpa = llm.prefill(hf.load(transformers.BertConfig(num_hidden_layers=2), attention="sdpa"), 32).report.totals
    # 2 layers · (7,077,888 · 32 + 2·32²·768) + pooler 589,824
    assert eager.macs == sdpa.macs == 2 * (7_077_888 * 32 + 2 * 32**2 * 768) + 589_824


def test_t5_small_encoder_decoder():
    model = hf.load(transformers.T5Config())
    # shared 32128·512 = 16,449,536 (encoder, decoder and LM head share it); encoder layer: q, k, v, o
    # 4·512·512 = 1,048,576, wi 512·2048 + wo 2048·512 = 2,097,152, 2 LNs 1,024: 3,146,752 · 6 = 18,880,512;
    # decoder layer adds cross-attention 1,048,576 + LN 512: 4,195,840 · 6 = 25,175,040; a relative position
    # bias 32 buckets · 8 heads = 256 and a final LN 512 on each side.
    summary = llm.summarize(model, seq=S)
    expected = 16_449_536 + 18_880_512 + 256 + 512 + 25_175_040 + 256 + 512
    assert summary.params == expected == 60_506_624 == model.model.num_parameters()
    # per token (encoder and decoder both S long): encoder 6 · (1,048,576 + 2,097,152) = 18,874,368; decoder
    # 6 · (1,048,576 self + 524,288 cross q, o + 524,288 cross k, v over the encoder's tokens + 2,097,152) =
    # 25,165,824; LM head 512·32128 = 16,449,536. Scores: encoder, decoder self and cross, each 6·2·S²·512.
    assert summary.prefill.split["attention scores"] == 3 * 6 * 2 * S**2 * 512
    assert summary.prefill.split["LM head"] == 16_449_536 * S
    assert summary.prefill.report.totals.macs == (18_874_368 + 25_165_824 + 16_449_536) * S + 18_432 * S**2
    with pytest.raises(Exception, match="no self-attention KV cache"):
        llm.decode(model, 16)


MIXTRAL = dict(hidden_size=256, num_hidden_layers=2, num_attention_heads=8, num_key_value_heads=2,
               intermediate_size=512, vocab_size=1000, num_local_experts=4, num_experts_per_tok=2)


def test_small_mixtral_routed_cost():
    model = hf.load(transformers.MixtralConfig(**MIXTRAL))
    # embed 1000·256 = 256,000; per layer: q 256·256 = 65,536, k and v 256·(2·32) = 16,384 each, o 65,536
    # (163,840), router 4·256 = 1,024, experts 4 · (2·512·256 + 256·512) = 1,572,864, 2 norms 512:
    # 1,738,240 · 2 = 3,476,480; final norm 256; LM head 256,000.
    summary = llm.summarize(model, seq=S)
    assert summary.params == 256_000 + 3_476_480 + 256 + 256_000 == 3_988_736 == model.model.num_parameters()
    assert (summary.moe.experts, summary.moe.top_k, summary.moe.layers) == (4, 2, 2)
    assert summary.active_params == 3_988_736 - 2 * 1_572_864 * (4 - 2) // 4  # 2,415,872
    # per token: routed experts top-2 · 3·256·512 = 786,432 and the router 1,024 per layer (MLP part);
    # projections 163,840 per layer; LM head 256,000; scores 2 layers · 2 · S² · 8 · 32 = 1,024·S².
    split = summary.prefill.split
    assert split["MLP"] == 2 * (786_432 + 1_024) * S
    assert split["attention projections"] == 2 * 163_840 * S
    assert split["attention scores"] == 1_024 * S**2
    report = summary.prefill.report
    assert report.totals.macs == 293_076_992  # 2,158,592·128 + 1,024·128²
    assert not report.uncounted and not report.mismatches
    assert report.row("model.layers.0.mlp.experts").formula_name == "routed_experts_silu"
    # the router's top-2 of 4 per token: 2 successive maxima, 3 + 2 = 5 compares, 128 tokens
    assert report.row("model.layers.0.mlp.gate").ops["compare"] == 5 * 128


def test_qwen_moe_shared_expert():
    config = transformers.Qwen2MoeConfig(
        hidden_size=128, num_hidden_layers=1, num_attention_heads=4, num_key_value_heads=4, vocab_size=500,
        intermediate_size=256, moe_intermediate_size=64, shared_expert_intermediate_size=192, num_experts=8,
        num_experts_per_tok=2,
    )
    summary = llm.summarize(hf.load(config), seq=16)
    assert (summary.moe.experts, summary.moe.top_k) == (8, 2)
    assert summary.moe.expert_params == 8 * 3 * 128 * 64  # 196,608
    assert summary.active_params == summary.params - 196_608 * 6 // 8  # the 6 experts a token skips
    # per token: router 128·8 = 1,024; routed 2 · 3·128·64 = 49,152; shared expert 3·128·192 = 73,728 and its
    # gate 128·1 = 128
    assert summary.prefill.split["MLP"] == (1_024 + 49_152 + 73_728 + 128) * 16
    assert not summary.prefill.report.uncounted and not summary.prefill.report.mismatches
