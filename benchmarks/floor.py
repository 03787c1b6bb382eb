"""The dense-product floor of a training step: the time its dense matrix products would take at the product
rate measured on this machine in the same run (shared by the model benchmarks).

A step's *dense products* are counted by running the step once under :class:`torch.utils.flop_counter.
FlopCounterMode`, which sees every aten operation executed, the hand-written backward passes of gnnddm's
custom ``autograd.Function`` layers included. Checked against hand counts, to the FLOP: an ``nn.Linear``
MLP and GraphSAGE (a layer's two products ``4 R a b`` forward, twice that backward, less the input gradient
of the first layer); the encoder-processor-decoder, the PyG network and gnnddm's (whose node projections
run over all rows where more than half of them are senders or receivers). Counted, ``2 m k n`` each:
``mm``, ``addmm`` and ``bmm``/``baddbmm`` with dense operands, and the in-place ``addmm_`` that gnnddm's
layers accumulate with (FlopCounterMode's own table misses it). Not counted: products with a sparse
operand (the CSR aggregation, which FlopCounterMode would count as a dense ``[N, N]`` product, and which
is bound by memory traffic rather than by arithmetic), bias additions, elementwise passes, gathers and
scatters, reductions and the optimizer. The count is of what the step executes: a gradient the step does
not need is not computed and not counted (the input gradient of a layer that reads the data), and a
recomputed forward (``model.recompute``) counts twice.

The *rate* is measured with the products a step is made of, ``[R, w] @ [w, w]`` (forward, input gradient)
and ``[w, R] @ [R, w]`` (weight gradient) for the benchmark's rows ``R`` (nodes or edges, at most 2^20) and
the model's hidden width ``w``: the median of a few repeats of each, averaged; in float32 and in bfloat16.
The floor is FLOPs / rate; a step's ratio to it says how far it is from doing nothing but its products at
this machine's speed (the rest is memory-bound: aggregation, elementwise passes, allocation).

    steps, flops = instrument(steps, device)   # the warm-up call of each step counts its products
    times = interleave(steps, iters)
    rates = measure_rates(rows, hidden, device)
    print("\\n".join(floor_table(medians, flops, rates, reference="pyg")))
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from pathlib import Path

MAX_ROWS = 1 << 20  # products of more rows run at the same rate, out of cache


def _shapes(a, b) -> tuple[int, int, int, int] | None:
    """(batch, m, k, n) of ``a @ b``, or None when an operand is not a dense (strided) tensor."""
    import torch

    if a.layout != torch.strided or b.layout != torch.strided:
        return None
    return (a.shape[0] if a.dim() == 3 else 1, a.shape[-2], a.shape[-1], b.shape[-1])


def _product_flops(first: int):
    """A FlopCounterMode formula for a product whose operands are ``args[first]`` and ``args[first + 1]``:
    ``2 batch m k n``, or 0 when one of them is sparse."""

    def count(*args, out_val=None, **kwargs) -> int:
        shape = _shapes(args[first], args[first + 1])
        return 0 if shape is None else 2 * shape[0] * shape[1] * shape[2] * shape[3]

    count._get_raw = True  # FlopCounterMode passes the tensors themselves, not their shapes
    return count


def _mapping() -> dict:
    import torch

    aten = torch.ops.aten
    return {aten.mm: _product_flops(0), aten.bmm: _product_flops(0), aten.addmm: _product_flops(1),
            aten.addmm_: _product_flops(1), aten.baddbmm: _product_flops(1)}


def dense_flops(fn) -> int:
    """FLOPs of the dense products that ``fn()`` executes (see the module's docstring for what counts)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False, custom_mapping=_mapping()) as counter:
        fn()
    return counter.get_total_flops()


def sync(device) -> None:
    """Wait for the work queued on ``device`` (CUDA runs asynchronously; a CPU has nothing to wait for)."""
    import torch

    if str(device).startswith("cuda"):
        torch.cuda.synchronize(device)


def instrument(steps: dict, device="cpu") -> tuple[dict, dict[str, int]]:
    """Steps that wait for ``device`` before returning (so that wall clocks time them), and the dict that
    their first calls fill with each step's dense-product FLOPs: the warm-up, which is not timed, runs
    under the counter."""
    flops: dict[str, int] = {}

    def wrap(name, step):
        def run():
            if name in flops:
                step()
            else:
                flops[name] = dense_flops(step)
            sync(device)

        return run

    return {name: wrap(name, step) for name, step in steps.items()}, flops


# ------------------------------------------------------------------------------------ rates
@dataclass(frozen=True)
class Rates:
    """GFLOP/s of the products of ``rows`` x ``width`` in float32 and bfloat16 on ``device``."""

    float32: float
    bfloat16: float | None  # None: the device refuses bf16 products
    bf16_support: str  # how the device does bf16 products, in words
    rows: int
    width: int
    device: str

    def floor(self, flops: float, dtype: str = "float32") -> float | None:
        """Seconds that ``flops`` of products take at this rate."""
        rate = self.float32 if dtype == "float32" else self.bfloat16
        return None if rate is None else flops / (rate * 1e9)

    def line(self) -> str:
        bf16 = "not available" if self.bfloat16 is None else f"{self.bfloat16:.0f} GFLOP/s"
        return (f"product rate on {self.device} ([{self.rows}, {self.width}] @ [{self.width}, {self.width}] and "
                f"[{self.width}, {self.rows}] @ [{self.rows}, {self.width}], measured in this run): float32 "
                f"{self.float32:.0f} GFLOP/s, bfloat16 {bf16} ({self.bf16_support})")


def _rate(rows: int, width: int, dtype, device, repeats: int) -> float:
    import torch

    a = torch.randn(rows, width, dtype=dtype, device=device)
    w = torch.randn(width, width, dtype=dtype, device=device)
    g = torch.randn(rows, width, dtype=dtype, device=device)
    rates = []
    for product in (lambda: a @ w, lambda: g.t() @ a):
        product()
        times = []
        for _ in range(repeats):
            sync(device)
            t0 = time.perf_counter()
            product()
            sync(device)
            times.append(time.perf_counter() - t0)
        rates.append(2 * rows * width * width / statistics.median(times) / 1e9)
    return statistics.mean(rates)


def bf16_support(device="cpu") -> str | None:
    """How ``device`` does bfloat16 products, in words; None when it refuses them (a small bf16 product
    is tried). On a CPU, its flags say whether the products are native (AVX512-BF16, AMX) or emulated."""
    import torch

    try:
        torch.ones(8, 8, dtype=torch.bfloat16, device=device) @ torch.ones(8, 8, dtype=torch.bfloat16,
                                                                             device=device)
    except RuntimeError:
        return None
    if str(device).startswith("cuda"):
        return "native" if torch.cuda.is_bf16_supported() else "emulated"
    cpuinfo = Path("/proc/cpuinfo")
    flags = set(cpuinfo.read_text().split()) if cpuinfo.exists() else set()
    native = [name for flag, name in (("avx512_bf16", "AVX512-BF16"), ("amx_bf16", "AMX-BF16")) if flag in flags]
    capability = torch.backends.cpu.get_cpu_capability()
    return f"{capability}, {' and '.join(native)}" if native else f"{capability}, no bf16 instructions: emulated"


def measure_rates(rows: int, width: int, device="cpu", repeats: int = 5) -> Rates:
    """The product rates of ``[rows, width]`` activations (rows capped at :data:`MAX_ROWS`) on ``device``."""
    import torch

    rows = max(1, min(int(rows), MAX_ROWS))
    support = bf16_support(device)
    bf16 = None if support is None else _rate(rows, width, torch.bfloat16, device, repeats)
    return Rates(_rate(rows, width, torch.float32, device, repeats), bf16, support or "refused", rows, width,
                 str(device))


# ------------------------------------------------------------------------------------ tables
HEADER = ["| step | median s | dense GFLOP | float32 floor s | step / floor | bf16 floor s | step / bf16 floor "
          "| step / reference |", "|---|---:|---:|---:|---:|---:|---:|---:|"]


def floor_row(name: str, seconds: float | None, flops: float, rates: Rates, reference_s: float | None) -> str:
    """One table row: the step's median time, its products, both floors and its ratios to them and to the
    reference's step (``seconds`` None: a step whose products were counted but that was not timed)."""
    f32, bf16 = rates.floor(flops), rates.floor(flops, "bfloat16")

    def ratio(floor):
        return "-" if floor is None or seconds is None else f"{seconds / floor:.2f}x"

    cells = [name, "not run" if seconds is None else f"{seconds:.3g}", f"{flops / 1e9:.3g}", f"{f32:.3g}",
             ratio(f32), "-" if bf16 is None else f"{bf16:.3g}", ratio(bf16),
             "-" if reference_s is None or seconds is None else f"{seconds / reference_s:.2f}x"]
    return "| " + " | ".join(cells) + " |"


def floor_table(medians: dict[str, float], flops: dict[str, int], rates: Rates,
                reference: str | None = None) -> list[str]:
    """The markdown table of :func:`floor_row` for every step of ``flops`` (timed: in ``medians``;
    ``reference``: the step the last column divides by), with the rates' line above it."""
    ref = medians.get(reference) if reference else None
    rows = [floor_row(name, medians.get(name), count, rates, ref) for name, count in flops.items()]
    return [rates.line() + ".", "", *HEADER, *rows]


def print_and_write(times: dict[str, list[float]], flops: dict[str, int], rates: Rates, reference: str,
                    setup: str, args, block: tuple[str, str, object]) -> None:
    """Print the floor table of interleaved step ``times`` (medians) against ``reference``; with
    ``args.output``, write it as the block ``block`` = (tool, name, stamp) of that page, under ``setup``
    and ``args.iters``."""
    import results_blocks

    table = floor_table({k: statistics.median(v) for k, v in times.items()}, flops, rates, reference)
    print("\n".join(table))
    if args.output:
        tool, name, stamp = block
        body = [f"{setup}; medians of {args.iters} interleaved steps after a warm-up.", "", *table]
        results_blocks.write_block(args.output, tool, name, "\n".join(body), stamp, "# Performance")
        print(f"  wrote {args.output}")
