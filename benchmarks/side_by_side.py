"""Training steps of two networks timed side by side in one process (shared by the model benchmarks).

:func:`adam_step` makes the step closure (forward, MSE loss, backward, Adam); :func:`interleave` runs the
steps in rounds, alternating their order, the first round a warm-up, so that load from other processes
hits every variant alike; :func:`ratio` is the median of the per-round ratios of two variants, and
:func:`report` prints the medians and that ratio against a goal. :func:`pyg_interaction` is the reference
interaction layer as PyG users write it, for the benchmarks of the interaction models. :func:`twin_steps`
adds gnnddm's step with bf16 products (``trainer.precision=bf16``) and compiled (``trainer.compile=true``).
"""

from __future__ import annotations

import copy
import functools
import statistics
import time


def adam_step(model, forward, y, lr: float = 1e-3):
    """``step()``: one Adam step on the MSE of ``forward()`` against ``y``."""
    import torch

    opt = torch.optim.Adam(model.parameters(), lr=lr)

    def step():
        opt.zero_grad(set_to_none=True)
        torch.nn.functional.mse_loss(forward(), y).backward()
        opt.step()

    return step


#: the run settings a gnnddm step can be timed with beside the float32 one (:func:`twin_steps`)
TWINS = ("bf16", "compiled")


def twin_steps(model, forward_of, y, names, device="cpu") -> tuple[dict, set[str]]:
    """Steps of twins of ``model`` (deep copies: the same weights), one per name of ``names`` in
    :data:`TWINS`, each named ``"gnnddm <name>"``: ``forward_of(twin)`` is the twin's forward pass.

    A compiled twin is compiled here, by one warm-up step, before anything is timed (its compile seconds
    are printed, apart from its step times), and its name is returned in the set of steps whose dense
    products the caller takes from the float32 step's (the same products; a FLOP counter cannot see inside
    compiled kernels)."""
    from floor import sync

    from gnnddm.models.execution import compile_seconds, set_compile, set_precision

    steps, counted_elsewhere = {}, set()
    for name in names:
        twin = copy.deepcopy(model)
        if name == "bf16":
            set_precision(twin, "bf16")
        elif name == "compiled":
            set_compile(twin, True)
        else:
            raise ValueError(f"unknown twin {name!r}; expected one of {', '.join(TWINS)}")
        step = adam_step(twin, functools.partial(forward_of, twin), y)
        if name == "compiled":
            before, t0 = compile_seconds(), time.perf_counter()
            step()
            sync(device)
            compiled = [k for k, v in twin.compiled_stages.items() if v is not False]
            print(f"  gnnddm compiled: first step {time.perf_counter() - t0:.1f} s, of which compiling "
                  f"{compile_seconds() - before:.1f} s; stages compiled: {', '.join(compiled) or 'none'}",
                  flush=True)
            counted_elsewhere.add(f"gnnddm {name}")
            step = _synced(step, device)  # the other steps wait for the device in floor.instrument
        steps[f"gnnddm {name}"] = step
    return steps, counted_elsewhere


def _synced(step, device):
    from floor import sync

    def run():
        step()
        sync(device)

    return run


def interleave(steps: dict, iters: int) -> dict[str, list[float]]:
    """Seconds of each of ``iters`` steps per variant, after one warm-up round; orders alternate by round."""
    times = {k: [] for k in steps}
    for it in range(iters + 1):
        for name in (list(steps) if it % 2 == 0 else list(steps)[::-1]):
            t0 = time.perf_counter()
            steps[name]()
            if it:  # the first round warms up
                times[name].append(time.perf_counter() - t0)
    return times


def ratio(times: dict[str, list[float]], ours: str, reference: str) -> float:
    """Median over the rounds of ``ours`` / ``reference``."""
    return statistics.median(a / b for a, b in zip(times[ours], times[reference], strict=True))


def print_medians(times: dict[str, list[float]], width: int = 20) -> None:
    """One line per variant: its median and every timed step."""
    for name, t in times.items():
        print(f"  {name:<{width}} median {statistics.median(t):.3f} s/step  ({', '.join(f'{v:.2f}' for v in t)})")


def report(times: dict[str, list[float]], ours: str, reference: str, goal: float, width: int = 20) -> float:
    """Print the medians and ``ours`` / ``reference`` (:func:`ratio`) against ``goal``; return the ratio."""
    print_medians(times, width)
    speed = ratio(times, ours, reference)
    print(f"  gnnddm / PyG: {speed:.2f}x (median of per-round ratios; goal <= {goal}x: "
          f"{'met' if speed <= goal else 'NOT met'})")
    return speed


def pyg_interaction(layer):
    """An interaction layer as PyG users write it, with deep copies of ``layer.edge_mlp`` and
    ``layer.node_mlp``: ``MessagePassing.edge_updater`` computes ``e + MLP_e([e, x_j, x_i])`` on the
    concatenated ``[E, 3*hidden]`` inputs, ``propagate`` sums the new edge latents into their targets, and
    ``x_i + MLP_n([x_i, sum e'])`` updates them. ``forward(x, e, edge_index)`` takes ``x`` as one tensor or as
    a (senders, receivers) pair (a bipartite layer); it returns the receivers' new latents and ``e'``."""
    import torch
    from torch_geometric.nn import MessagePassing

    class Interaction(MessagePassing):
        def __init__(self):
            super().__init__(aggr="add")
            self.edge_mlp, self.node_mlp = copy.deepcopy(layer.edge_mlp), copy.deepcopy(layer.node_mlp)

        def edge_update(self, e, x_i, x_j):
            return e + self.edge_mlp(torch.cat([e, x_j, x_i], dim=-1))

        def message(self, e):
            return e

        def forward(self, x, e, edge_index):
            x = x if isinstance(x, tuple) else (x, x)
            size = (x[0].shape[0], x[1].shape[0])
            e = self.edge_updater(edge_index, x=x, e=e, size=size)
            agg = self.propagate(edge_index, e=e, size=size)
            return x[1] + self.node_mlp(torch.cat([x[1], agg], dim=-1)), e

    return Interaction()
