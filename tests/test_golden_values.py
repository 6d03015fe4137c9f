"""AlexNet's numbers, derived by hand, pinned in the report and in every golden file (which are rewritten
from the code under test, so they need numbers that are not).

torchvision's AlexNet on 1×3×224×224. Conv: params C_in·C_out·K² + C_out, MACs C_out·H_out·W_out·C_in·K²,
bias adds C_out·H_out·W_out; ReLU one compare per element; 3×3 max pool 8 compares per output; Linear:
params C_in·C_out + C_out, MACs C_in·C_out, bias adds C_out.
"""

from pathlib import Path

import pytest
import torchvision

from flopcalc import analyze

GOLDEN = Path(__file__).parent / "golden"

# name: (params, MACs, other ops)
LAYERS = {
    "features.0": (3 * 64 * 121 + 64, 64 * 55 * 55 * 3 * 121, 64 * 55 * 55),  # 23,296; 70,276,800; 193,600
    "features.1": (0, 0, 64 * 55 * 55),  # 193,600
    "features.2": (0, 0, 64 * 27 * 27 * 8),  # 373,248
    "features.3": (64 * 192 * 25 + 192, 192 * 27 * 27 * 64 * 25, 192 * 27 * 27),  # 307,392; 223,948,800; 139,968
    "features.4": (0, 0, 192 * 27 * 27),
    "features.5": (0, 0, 192 * 13 * 13 * 8),  # 259,584
    "features.6": (192 * 384 * 9 + 384, 384 * 169 * 192 * 9, 384 * 169),  # 663,936; 112,140,288; 64,896
    "features.7": (0, 0, 384 * 169),
    "features.8": (384 * 256 * 9 + 256, 256 * 169 * 384 * 9, 256 * 169),  # 884,992; 149,520,384; 43,264
    "features.9": (0, 0, 256 * 169),
    "features.10": (256 * 256 * 9 + 256, 256 * 169 * 256 * 9, 256 * 169),  # 590,080; 99,680,256; 43,264
    "features.11": (0, 0, 256 * 169),
    "features.12": (0, 0, 256 * 6 * 6 * 8),  # 73,728
    "avgpool": (0, 0, 256 * 6 * 6),  # 6 → 6: one tap per window, so only the 9,216 divisions
    "classifier.1": (9216 * 4096 + 4096, 9216 * 4096, 4096),  # 37,752,832; 37,748,736
    "classifier.2": (0, 0, 4096),
    "classifier.4": (4096 * 4096 + 4096, 4096 * 4096, 4096),  # 16,781,312; 16,777,216
    "classifier.5": (0, 0, 4096),
    "classifier.6": (4096 * 1000 + 1000, 4096 * 1000, 1000),  # 4,097,000; 4,096,000
}
MACS = sum(macs for _, macs, _ in LAYERS.values())
OTHER_OPS = sum(ops for _, _, ops in LAYERS.values())


def test_the_hand_totals() -> None:
    assert MACS == 714_188_480
    assert OTHER_OPS == 1_703_144  # bias adds 494,184 + ReLU 493,184 + max pools 706,560 + avgpool 9,216
    assert 2 * MACS + OTHER_OPS == 1_430_080_104


@pytest.fixture(scope="module")
def report():
    return analyze(torchvision.models.alexnet(weights=None), (1, 3, 224, 224), name="alexnet")


def test_the_report_has_the_hand_numbers(report) -> None:
    for name, expected in LAYERS.items():
        row = report.row(name)
        assert (row.params, row.macs, row.other_ops) == expected, name
    assert (report.totals.macs, report.totals.other_ops, report.totals.flops) == (
        714_188_480, 1_703_144, 1_430_080_104
    )


@pytest.mark.parametrize("golden", ["alexnet.txt", "alexnet.md", "alexnet.tex"])
def test_every_golden_has_the_hand_numbers(golden: str) -> None:
    text = (GOLDEN / golden).read_text(encoding="utf-8")
    lines = text.splitlines()

    def written(n: int) -> str:
        return f"{n:,}".replace(",", "{,}") if golden.endswith(".tex") else f"{n:,}"

    for name, numbers in LAYERS.items():
        row = next(line for line in lines if f"{name} " in line or f"{name}`" in line or f"{name}}}" in line)
        for n in numbers:
            assert written(n) in row or f"{n:,}" in row, (golden, name, n)
    for total in ("714,188,480", "1,703,144", "1,430,080,104"):
        assert total in text or total.replace(",", "{,}") in text, (golden, total)
