"""The GATv2 benchmark runs end to end and reports its ratio against PyG."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_benchmark_reports_the_ratio_against_pyg():
    res = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "bench_gatv2.py"), "--resolution", "5.625", "--iters", "2"],
        cwd=REPO, capture_output=True, text=True, timeout=300, check=False,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    assert re.search(r"gnnddm / PyG: \d+\.\d+x \(median of per-round ratios; goal <= 0\.5x: (met|NOT met)\)",
                     res.stdout), res.stdout
    differ = float(re.search(r"outputs differ by at most (\S+);?", res.stdout).group(1).rstrip(";"))
    assert differ < 1e-4
