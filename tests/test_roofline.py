"""Bytes moved per layer, arithmetic intensity and roofline time on a named or given device."""

from __future__ import annotations

import json
import re

import pytest
import torch
from torch import nn
from typer.testing import CliRunner

import flopcalc
from flopcalc.cli import app
from flopcalc.errors import InputError
from flopcalc.hardware import HARDWARE, hardware
from flopcalc.render.json import to_dict


def test_linear_4096_bf16_one_token_on_h100_is_memory_bound():
    with torch.device("meta"):
        model = nn.Linear(4096, 4096, bias=False, dtype=torch.bfloat16)
    report = flopcalc.analyze(model, [flopcalc.InputSpec((1, 4096), torch.bfloat16)], hardware="h100-sxm")
    roofline = report.totals.roofline
    assert report.totals.macs == 16_777_216  # 4096*4096
    # weights 4096*4096*2 B = 33,554,432, input and output 4096*2 B = 8,192 each
    assert roofline.model.bytes == 33_554_432 + 8_192 + 8_192
    assert roofline.dtype == "bfloat16" and roofline.peak == 989.4e12
    assert roofline.model.bound == "memory"
    assert roofline.model.time_s == pytest.approx((33_554_432 + 8_192 + 8_192) / 3.35e12, rel=1e-12)
    assert roofline.model.compute_s == pytest.approx(2 * 16_777_216 / 989.4e12, rel=1e-12)


def test_mlp_bytes_by_hand_and_custom_hardware():
    with torch.device("meta"):
        model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))
    report = flopcalc.analyze(model, (8, 64), hardware="peak=1e9,bandwidth=1e6")
    first, relu, last = (report.row(name).roofline for name in ("0", "1", "2"))
    # addmm reads bias 128*4, x 8*64*4, Wᵀ 64*128*4 and writes 8*128*4: 512 + 2,048 + 32,768 + 4,096
    assert first.bytes == 39_424
    assert relu.bytes == 4_096 + 4_096  # reads and writes 8*128 floats
    assert last.bytes == 40 + 4_096 + 5_120 + 320  # bias, input, Wᵀ, output
    # 2*65,536 + 1,024 bias adds = 132,096 FLOPs at 1e9 FLOP/s: 132.096 µs; 39,424 B at 1e6 B/s: 39.424 ms
    assert first.time_s == pytest.approx(39_424 / 1e6) and first.bound == "memory"
    assert first.intensity == pytest.approx(132_096 / 39_424)
    assert report.totals.roofline.model.bytes == 39_424 + 8_192 + 9_576
    fast_memory = flopcalc.analyze(model, (8, 64), hardware="peak=1e9,bandwidth=1T").row("0").roofline
    assert fast_memory.bound == "compute" and fast_memory.time_s == pytest.approx(132_096 / 1e9)


def test_lookup_reads_the_rows_it_gathers_not_the_table():
    """A decode step looks up one row of a 32,000-row table: it reads that row, not 65 MB."""
    model = nn.Embedding(32_000, 512)
    report = flopcalc.analyze(model, [flopcalc.InputSpec((1, 16), torch.int64)], hardware="h100-sxm")
    # reads 16 int64 indices (128 B) and 16 rows of 512 float32 (32,768 B), writes the 16 rows (32,768 B)
    assert report.totals.roofline.model.bytes == 128 + 32_768 + 32_768

    class Gather(nn.Module):
        def forward(self, x, index):
            return torch.index_select(x, 1, index)

    report = flopcalc.analyze(Gather(), [flopcalc.InputSpec((4, 100)), flopcalc.InputSpec((3,), torch.int64)],
                              hardware="h100-sxm")
    # reads 3 int64 indices (24 B) and 4·3 floats (48 B), writes them (48 B)
    assert report.totals.roofline.model.bytes == 24 + 48 + 48


def test_hardware_table_is_dense_and_decimal():
    h100 = HARDWARE["h100-sxm"]
    assert h100.peak_flops["bfloat16"] == 989.4e12  # dense; the 1,979 TFLOPS headline is 2:4 sparse
    assert h100.bandwidth == 3.35e12  # decimal TB/s
    assert HARDWARE["h200-sxm"].bandwidth == 4.8e12
    assert HARDWARE["a100-sxm-80gb"].peak_flops["bfloat16"] == 312e12
    assert hardware("peak=989T,bandwidth=3.35T").peak_for("float32") == 989e12
    with pytest.raises(InputError, match="unknown hardware"):
        hardware("h300")
    with pytest.raises(InputError, match="peak=FLOP/s,bandwidth=B/s"):
        hardware("peak=1e12")
    with pytest.raises(InputError, match="no peak for float64"):
        h100.peak_for("float64")


def test_measured_cpu_gives_a_ceiling():
    cpu = hardware("cpu")
    assert cpu.peak_for("float32") > 0 and cpu.bandwidth > 0 and "measured" in cpu.source


def test_json_and_cli(tmp_path):
    with torch.device("meta"):
        model = nn.Sequential(nn.Linear(64, 128), nn.ReLU())
    data = to_dict(flopcalc.analyze(model, (8, 64), hardware="a100-sxm-80gb"))
    assert data["totals"]["roofline"]["bytes_moved"] == 39_424 + 8_192
    assert data["totals"]["roofline"]["peak_flops_per_s"] == 19.5e12  # float32, no TF32 assumed
    assert data["layers"][0]["roofline"]["bound"] == "memory"
    model_file = tmp_path / "net.py"
    model_file.write_text("from torch import nn\ndef net():\n    return nn.Linear(4096, 4096, bias=False)\n")
    runner = CliRunner()
    args = [f"{model_file}:net", "--input", "4096", "--dtype", "bfloat16", "--hardware", "h100-sxm"]
    result = runner.invoke(app, [*args, "-f", "json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["totals"]["roofline"]["bytes_moved"] == 33_570_816
    result = runner.invoke(app, [f"{model_file}:net", "--input", "4096", "--hardware", "tpu"])
    assert result.exit_code == 2 and "unknown hardware 'tpu'" in result.output
    result = runner.invoke(app, [f"{model_file}:net", "--input", "4096", "--plot", str(tmp_path / "r.png")])
    assert result.exit_code == 2 and "--plot needs --hardware" in result.output


def test_plot(tmp_path):
    pytest.importorskip("matplotlib")
    model_file = tmp_path / "net.py"
    model_file.write_text("from torch import nn\ndef net():\n    return nn.Sequential(nn.Linear(64, 64), nn.ReLU())\n")
    target = tmp_path / "roofline.png"
    result = CliRunner().invoke(
        app, [f"{model_file}:net", "--input", "64", "--hardware", "h100-sxm", "--plot", str(target)]
    )
    assert result.exit_code == 0, result.output
    assert target.read_bytes().startswith(b"\x89PNG")


def test_every_format_renders_every_view():
    from flopcalc.render.csv import to_csv
    from flopcalc.render.html import to_html
    from flopcalc.render.latex import to_latex
    from flopcalc.render.markdown import to_markdown

    with torch.device("meta"):
        model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))
    report = flopcalc.analyze(model, (8, 64), backward=True, optimizer="adam", hardware="h100-sxm")
    for render in (to_csv, to_markdown, to_latex, to_html):
        text = render(report, None, True)
        assert "39,424" in text or "39424" in text  # the first Linear's bytes moved
        assert "65,536" in text or "65536" in text  # its grad-weight MACs


@pytest.mark.parametrize(("spec", "message"), [
    ("peak=-1,bandwidth=1e12", "--hardware peak must be positive, not '-1'"),
    ("peak=0,bandwidth=1e12", "--hardware peak must be positive, not '0'"),
    ("peak=abc,bandwidth=1e12", "--hardware peak='abc' is not a number"),
])
def test_custom_hardware_values_are_checked(spec, message):
    with pytest.raises(InputError, match=re.escape(message)):
        hardware(spec)
