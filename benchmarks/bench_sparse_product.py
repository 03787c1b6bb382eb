"""The kernels behind a GraphSAGE step on the 8-neighbour grid, timed side by side in one run.

- the CSR aggregation ``A @ x`` (mean adjacency) as MKL computes it out of place, against
  :func:`gnnddm.models.graph.sparse_product` (in place into a fresh buffer; bitwise the same, checked here),
  and against torch's own bf16 kernel ``torch.sparse.mm(A, x, reduce="sum")``;
- a dense ``[N, 64] @ [64, 64]`` product in float32 and in bf16, and the cast of its input to bf16.

Medians of ``--repeats`` calls after two warm-up calls, 2 threads, huge-page allocations as ``gnnddm`` runs.

    python3 benchmarks/bench_sparse_product.py                 # 0.25 deg (1,038,240 nodes), 64 columns
    python3 benchmarks/bench_sparse_product.py --resolution 1 --columns 4 64 128
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")  # before torch starts, as the gnnddm command does


def median_seconds(fn, repeats: int) -> float:
    fn()
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--resolution", type=float, default=0.25)
    ap.add_argument("--columns", type=int, nargs="+", default=[64])
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args(argv)

    import torch

    from gnnddm.graph.grid import grid_edges
    from gnnddm.models.common import adjacency
    from gnnddm.models.graph import prepare_graph, sparse_product

    torch.set_num_threads(2)
    nlat, nlon = int(round(180 / args.resolution)) + 1, int(round(360 / args.resolution))
    n = nlat * nlon
    graph = prepare_graph(grid_edges(nlat, nlon), n)
    a, _ = adjacency(graph, "mean")
    a_bf16 = torch.sparse_csr_tensor(a.crow_indices(), a.col_indices(), a.values().bfloat16(), a.shape)
    print(f"{args.resolution:g} deg ({n} nodes, {graph.num_edges} edges), 2 threads, medians of {args.repeats}")
    for cols in args.columns:
        x = torch.randn(n, cols)
        assert torch.equal(sparse_product(a, x), a @ x), "the in-place product differs from the out-of-place one"
        out_of_place = median_seconds(lambda x=x: a @ x, args.repeats)
        in_place = median_seconds(lambda x=x: sparse_product(a, x), args.repeats)
        x_bf16 = x.bfloat16()
        reduce_bf16 = median_seconds(lambda x=x_bf16: torch.sparse.mm(a_bf16, x, "sum"), args.repeats)
        print(f"  A @ x [{n}, {cols}]: out of place {out_of_place:.4f} s, in place {in_place:.4f} s "
              f"({in_place / out_of_place:.2f}x, bitwise equal); torch's bf16 kernel {reduce_bf16:.4f} s "
              f"({reduce_bf16 / in_place:.2f}x the in-place float32 one)")
    h, w = torch.randn(n, 64), torch.randn(64, 64)
    h_bf16, w_bf16 = h.bfloat16(), w.bfloat16()
    dense32 = median_seconds(lambda: h @ w, args.repeats)
    dense16 = median_seconds(lambda: h_bf16 @ w_bf16, args.repeats)
    cast = median_seconds(lambda: h.bfloat16(), args.repeats)
    print(f"  [{n}, 64] @ [64, 64]: float32 {dense32:.4f} s, bf16 {dense16:.4f} s ({dense16 / dense32:.2f}x); "
          f"the cast of its input to bf16 {cast:.4f} s ({cast / dense32:.2f}x the float32 product)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
