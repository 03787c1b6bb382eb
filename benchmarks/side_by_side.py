"""Training steps of two networks timed side by side in one process (shared by the model benchmarks).

:func:`adam_step` makes the step closure (forward, MSE loss, backward, Adam); :func:`interleave` runs the
steps in rounds, alternating their order, the first round a warm-up, so that load from other processes
hits every variant alike; :func:`ratio` is the median of the per-round ratios of two variants.
"""

from __future__ import annotations

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
