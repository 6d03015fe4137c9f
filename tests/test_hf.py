"""Hugging Face models from configs (no network, no weights): a small Llama with grouped-query attention.

The model: hidden 512, 2 layers, 8 query heads and 2 KV heads of head_dim 512/8 = 64, intermediate 1376 (gated
MLP: gate, up and down projections), vocab 32000, untied LM head.

Params: embedding 32000·512 = 16,384,000; per layer q 512·512 = 262,144, k and v 512·(2·64) = 65,536 each,
o 262,144 (655,360 for attention), MLP 3·512·1376 = 2,113,536, two RMSNorms 2·512 = 1,024: 2,769,920;
two layers 5,539,840; final norm 512; LM head 16,384,000. Total 38,308,352; without the embedding table
21,924,352.

MACs per token in every linear: 2 layers · (655,360 + 2,113,536) + 16,384,000 = 21,921,792.
Attention scores, QKᵀ and AV over S keys for each of S queries: 2 layers · 2 · S² · 8 heads · 64 = 2,048·S².
"""

from __future__ import annotations

import json
import random

import pytest
import torch

transformers = pytest.importorskip("transformers")

from flopcalc import hf, llm  # noqa: E402
from support import run_cli  # noqa: E402

LLAMA = dict(hidden_size=512, num_hidden_layers=2, num_attention_heads=8, num_key_value_heads=2,
             intermediate_size=1376, vocab_size=32000)
LINEAR_PER_TOKEN = 21_921_792  # 2·(655,360 + 2,113,536) + 16,384,000
SCORES_PER_S2 = 2_048  # 2 layers · 2 · 8 heads · 64


@pytest.fixture(scope="module")
def llama() -> hf.HFModel:
    return hf.load(transformers.LlamaConfig(**LLAMA))


def test_params_and_attention_kind(llama):
    summary = llm.summarize(llama, seq=16)
    assert summary.params == 38_308_352 == llama.model.num_parameters()
    assert summary.non_embedding_params == 21_924_352  # 38,308,352 - 32000·512
    assert (summary.attention.kind, summary.attention.heads, summary.attention.kv_heads) == ("GQA (group 4)", 8, 2)


def test_prefill_hand_formula_and_split(llama):
    phase = llm.prefill(llama, 2048)
    # scores 2,048·2048² = 8,589,934,592; linear 21,921,792·2048 = 44,895,830,016
    assert phase.report.totals.macs == 8_589_934_592 + 44_895_830_016
    assert phase.split == {
        "attention scores": 8_589_934_592,
        "attention projections": 2 * 655_360 * 2048,  # 2,684,354,560
        "MLP": 2 * 2_113_536 * 2048,  # 8,657,043,456
        "LM head": 16_384_000 * 2048,  # 33,554,432,000
        "other": 0,
    }
    assert phase.macs_per_token == 2_048 * 2048 + LINEAR_PER_TOKEN  # 26,116,096
    assert not phase.report.uncounted and not phase.report.mismatches
    # the S² scores are SDPA's functional row under LlamaAttention: checked by the attention formula, so every
    # MAC is (before functional rows only 44,895,830,016 / 53,485,764,608 = 0.839 were)
    assert phase.report.totals.checked.macs == 53_485_764_608


def test_closed_form_in_seq_equals_concrete(llama):
    phase = llm.prefill(llama, "S")
    terms = {part: coefficients for part, *coefficients in llm.closed_form_terms(phase)}
    assert terms["attention scores"] == [SCORES_PER_S2, 0, 0]
    assert terms["attention projections"] == [0, 1_310_720, 0]  # 2 · 655,360
    assert terms["MLP"] == [0, 4_227_072, 0]  # 2 · 2,113,536
    assert terms["LM head"] == [0, 16_384_000, 0]
    for seq in random.Random(14).sample(range(2, 3000), 2):
        concrete = llm.prefill(llama, seq).report.totals
        assert phase.report.evaluate(S=seq)["macs"] == concrete.macs == SCORES_PER_S2 * seq**2 + LINEAR_PER_TOKEN * seq
        assert phase.report.evaluate(S=seq)["flops"] == concrete.flops


def test_decode_at_context(llama):
    phase = llm.decode(llama, 4096)
    # every linear once, attention over 4096 + 1 keys: 2 layers · 2 · 4097 · 8 · 64 = 8,390,656
    assert phase.report.totals.macs == LINEAR_PER_TOKEN + 8_390_656 == 30_312_448
    assert phase.split["attention scores"] == 8_390_656
    named = llm.decode(llama, "P")
    assert named.report.evaluate(P=4096)["macs"] == 30_312_448
    assert named.report.evaluate(P=100)["macs"] == LINEAR_PER_TOKEN + 2 * 2 * 101 * 8 * 64


def test_kv_cache_bytes_by_dtype():
    model = hf.load(transformers.LlamaConfig(**LLAMA), dtype="bfloat16")
    layout = model.cache_layout()
    assert layout.bytes_per_token == 2 * 2 * 2 * 64 * 2  # K and V · layers · KV heads · head_dim · 2 B = 1,024
    summary = llm.summarize(model, context=4096)
    assert summary.kv_cache_bytes(4096, 1) == 2 * 2 * 2 * 64 * 4096 * 2 == 4_194_304
    assert summary.phase_kv_cache_bytes == 4_194_304
    assert llm.summarize(hf.load(transformers.LlamaConfig(**LLAMA)), context=8).cache.bytes_per_token == 2_048


def test_generate_sums_decode_steps(llama):
    summary = llm.summarize(llama, seq=100, generate=3)
    prefill = SCORES_PER_S2 * 100**2 + LINEAR_PER_TOKEN * 100
    # step t attends to 100 + t cached tokens and itself: 21,921,792 + 2,048·(100 + t + 1)
    steps = sum(LINEAR_PER_TOKEN + 2_048 * (100 + t + 1) for t in range(3))
    assert summary.generation.macs == prefill + steps


def test_eager_and_sdpa_agree():
    eager = llm.prefill(hf.load(transformers.LlamaConfig(**LLAMA), attention="eager"), 64).report.totals
    sdpa = llm.prefill(hf.load(transformers.LlamaConfig(**LLAMA), attention="sdpa"), 64).report.totals
    assert eager.macs == sdpa.macs == SCORES_PER_S2 * 64**2 + LINEAR_PER_TOKEN * 64


def test_load_from_directory_and_file(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama", **LLAMA, "torch_dtype": "bfloat16"}))
    from_dir = hf.load(tmp_path)
    from_file = hf.load(tmp_path / "config.json")
    assert from_dir.model.num_parameters() == from_file.model.num_parameters() == 38_308_352
    assert from_dir.dtype == torch.bfloat16 and from_dir.model.device.type == "meta"


def test_load_never_modifies_the_config():
    config = transformers.LlamaConfig(**LLAMA)
    before = config.to_dict()
    hf.load(config, dtype="float16", attention="eager")
    assert config.to_dict() == before


def test_cli_json_has_kv_cache_and_summary(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama", **LLAMA, "torch_dtype": "bfloat16"}))
    result = run_cli(f"hf:{tmp_path}", "--decode", "--context", "4096", "--format", "json")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["totals"]["macs"] == 30_312_448
    assert data["totals"]["kv_cache_bytes"] == 4_194_304  # 2·2·2·64·4096·2 B
    assert data["llm"]["attention"] == {"kind": "GQA (group 4)", "heads": 8, "kv_heads": 2}
    assert data["llm"]["decode"]["macs_per_token"] == 30_312_448
    assert data["llm"]["kv_cache_bytes_per_token"] == 1_024


@pytest.mark.parametrize("output_format", ["table", "markdown", "latex", "csv", "html"])
def test_cli_summary_block_in_every_format(tmp_path, output_format):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama", **LLAMA}))
    result = run_cli(f"hf:{tmp_path}", "--seq", "128", "--format", output_format)
    assert result.exit_code == 0, result.stderr
    assert "LLM summary" in result.stdout or "llm_summary" in result.stdout
    # prefill 2,048·128² + 21,921,792·128 = 33,554,432 + 2,805,989,376 = 2,839,543,808 MACs
    assert "2,839,543,808" in result.stdout or "2839543808" in result.stdout.replace(",", "")
    assert "GQA (group 4)" in result.stdout


def test_cli_closed_form_in_seq(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama", **LLAMA}))
    result = run_cli(f"hf:{tmp_path}", "--seq", "S", "--depth", "1")
    assert result.exit_code == 0, result.stderr
    assert "2,048·S² + 21,921,792·S MACs" in result.stdout  # scores 2,048·S², every linear 21,921,792·S
    assert "b = 21,921,792 per token (1,310,720 attention projections + 4,227,072 MLP + 16,384,000 LM head)" in (
        result.stdout)


def test_training_views_apply_to_the_main_phase(llama):
    """A training step over a 16-token prompt: every product's operands both need a gradient (the embedding
    table is trainable, so even the first projection's input does), so grad-input and grad-weight each cost
    the forward's MACs: backward = 2 × forward."""
    summary = llm.summarize(llama, seq=16, views={"backward": True, "memory": True})
    totals = summary.main.report.totals
    forward = SCORES_PER_S2 * 16**2 + LINEAR_PER_TOKEN * 16  # 524,288 + 350,748,672
    assert totals.macs == forward == 351_272_960
    assert totals.backward_macs == 2 * forward == 702_545_920
    assert totals.memory.saved_for_backward_bytes > 0
    decode = llm.summarize(llama, seq=16, context=64, views={"hardware": "h200-sxm"})
    assert decode.prefill.report.totals.roofline is None  # the views go to the phase the table shows
    # One token reads every weight for one MAC each: far below H200's ridge point, so memory-bound.
    model = decode.decode.report.totals.roofline.model
    assert model.bound == "memory" and model.memory_s > 10 * model.compute_s


def test_cli_backward_and_roofline_of_a_prefill(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama", **LLAMA}))
    result = run_cli(f"hf:{tmp_path}", "--seq", "16", "--backward", "--optimizer", "adamw", "--hardware",
                     "h100-sxm", "--format", "json")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert (data["totals"]["macs"], data["totals"]["backward_macs"]) == (351_272_960, 702_545_920)
    # float32 AdamW: params, gradients and two moments, 4 B each, for 38,308,352 params = 612,933,632 B
    assert data["totals"]["memory"]["training"]["total_bytes"] == 16 * 38_308_352
    assert "backward pass" in data["convention"] and data["llm"]["prefill"]["macs"] == 351_272_960


def test_cli_convention_applies_to_the_prefill(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama", **LLAMA}))
    result = run_cli(f"hf:{tmp_path}", "--seq", "128", "--convention", "2N", "--format", "json")
    assert result.exit_code == 0, result.stderr
    # Kaplan's 2N per token: 2 · 21,924,352 non-embedding params · 128 tokens = 5,612,634,112 FLOPs
    convention = json.loads(result.stdout)["as_convention"]
    assert (convention["value"], convention["unit"]) == (2 * 21_924_352 * 128, "FLOPs")


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["hf:/nonexistent/dir/config.json", "--seq", "8"], "no such file or directory"),
        (["hf:{unknown}", "--seq", "8"], "unknown architecture model_type='not_a_model'"),
        (["hf:{llama}", "--context", "8"], "--decode and --context go together"),
        (["hf:{llama}"], "--seq"),
        (["hf:{llama}", "--seq", "8", "--input", "3"], "instead of --input"),
        (["alexnet", "--input", "3x8x8", "--seq", "8"], ": only for hf:PATH models"),
        (["hf:{llama}", "--decode", "--context", "8", "--convention", "palm"], "applies to a prefill"),
        (["hf:{llama}", "--seq", "8", "--time", "cpu"], "built from its config on meta without weights"),
        (["hf:{llama}", "--decode", "--context", "8", "--backward"], "a training step, which is a prefill"),
        (["hf:{llama}", "--seq", "S", "--memory"], "need concrete sizes"),
        (["hf:{llama}", "--seq", "8", "--plot", "r.png"], "--plot needs --hardware"),
        (["hf:{llama}", "--seq", "abc"],
         "--seq abc: not a whole number; e.g. --seq 128 (or a capitalised name for a closed form, --seq S)"),
        (["hf:{llama}", "--decode", "--context", "4k"],
         "--context 4k: not a whole number; e.g. --context 4096 (or a capitalised name for a closed form, "
         "--context P)"),
        (["hf:{llama}", "--seq", "8", "--generate", "0"], "--generate 0: must be at least 1; e.g. --generate 128"),
        (["hf:{llama}", "--seq", "x", "--convention", "2N"], "--seq x: not a whole number; e.g. --seq 128"),
    ],
    ids=["missing-path", "unknown-architecture", "context-without-decode", "no-phase", "input", "not-hf",
         "convention-decode", "time", "decode-backward", "symbolic-memory", "plot-without-hardware", "seq-letters",
         "context-letters", "generate-zero", "convention-seq-letters"],
)
def test_cli_errors_are_one_line(tmp_path, argv, expected):
    (tmp_path / "unknown.json").write_text(json.dumps({"model_type": "not_a_model"}))
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama", **LLAMA}))
    argv = [a.format(unknown=tmp_path / "unknown.json", llama=tmp_path) for a in argv]
    result = run_cli(*argv)
    assert result.exit_code == 2
    assert len(result.stderr.strip().splitlines()) == 1 and expected in result.stderr


def test_cli_without_transformers(tmp_path, monkeypatch):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama", **LLAMA}))
    monkeypatch.setitem(__import__("sys").modules, "transformers", None)  # import transformers now fails
    result = run_cli(f"hf:{tmp_path}", "--seq", "8")
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        "Error: hf: models need the transformers package, which is not installed (pip install 'flopcalc[hf]')"
    )


def test_cli_reads_a_model_id_from_the_local_cache_only(tmp_path):
    """A model id resolves in the Hugging Face cache (HF_HUB_CACHE) with the hub offline; an id not cached is
    one line, exit 2, and nothing is fetched."""
    import os
    import subprocess
    import sys

    snapshot = tmp_path / "models--acme--tiny-llama" / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text(json.dumps({"model_type": "llama", **LLAMA}))
    (tmp_path / "models--acme--tiny-llama" / "refs").mkdir()
    (tmp_path / "models--acme--tiny-llama" / "refs" / "main").write_text("abc123")
    env = {**os.environ, "HF_HUB_CACHE": str(tmp_path), "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, "-c", "from flopcalc.cli import main; main()"]
    found = subprocess.run([*command, "hf:acme/tiny-llama", "--seq", "4", "--format", "json"], env=env,
                           capture_output=True, text=True, check=False)
    assert found.returncode == 0, found.stderr
    assert json.loads(found.stdout)["totals"]["params"] == 38_308_352
    missing = subprocess.run([*command, "hf:acme/not-cached", "--seq", "4"], env=env, capture_output=True,
                             text=True, check=False)
    assert missing.returncode == 2
    assert missing.stderr.count("\n") == 1 and "not a model id in the local Hugging Face cache" in missing.stderr
