import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from memory import run  # noqa: E402


def test_medic_memory_stays_flat_over_a_long_run():
    """Ring buffers, a downsampled history and a bounded event log: no growth with the number of steps.

    8,000 steps after the buffers have filled: a leak of one Python float a step (32 bytes) would add
    256 KiB; the bound is 64 KiB (benchmarks/memory.py runs 200,000 steps for the README's figure)."""
    points = run(16_000, 4_000)
    settled = points[1][1]  # after the first 8,000 steps every buffer has filled
    assert points[-1][1] - settled < 64 * 1024, points
