"""Forecasts rolled out over lead times, and their scores per lead against persistence and climatology.

A forecast model (:class:`gnnddm.tasks.ForecastTask`) maps the state at t (and, with ``history = 2``,
at t − lead) to the increment to t + lead. Rolled out from an initial time t0, step k takes the state it
predicted at t0 + (k − 1)·lead as its input, with every entry valid, and returns the state at
t0 + k·lead; its inputs are assembled exactly as :meth:`ForecastTask.batch` assembles them, so lead 1 of a
rollout is the one-step prediction the model was trained and evaluated on.

Scores, per variable and lead, in physical units, over the entries valid both in the truth at the lead
and in the initial state (the same entries for every method), with the weights ``a`` of
``data.area`` (cos φ cell weights on regular grids, cell areas on meshes, 1 at stations):

- RMSE = sqrt(Σ a (f − o)² / Σ a), over every initial time and node;
- bias = Σ a (f − o) / Σ a;
- ACC, the anomaly correlation: per initial time Σ a f′ o′ / sqrt(Σ a f′² · Σ a o′²), with the anomalies
  f′ = f − c and o′ = o − c against the climatology c, then averaged over the initial times (as in
  WeatherBench 2); NaN where an anomaly is zero everywhere.

Baselines: *persistence* (the initial state at every lead) and *climatology* (c itself; its ACC is
undefined and reported as NaN). The climatology (:class:`Climatology`) is the mean of the training split
per node, and per node and UTC hour of the day where the training split holds every hour of the day
that its steps use at least twice.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from gnnddm.errors import ConfigError, DataError
from gnnddm.tasks import ForecastTask

METHODS = ("model", "persistence", "climatology")
SCORES = ("rmse", "bias", "acc")


def _hours_of_day(times: np.ndarray) -> np.ndarray:
    t = np.asarray(times, dtype="datetime64[s]")
    return ((t - t.astype("datetime64[D]")).astype(np.int64) // 3600).astype(np.int64)


@dataclass(frozen=True)
class Climatology:
    """The normalised mean state of the training split: ``values`` [H, N, V] for the UTC ``hours`` of the
    day (H of them), or [1, N, V] with ``hours`` None (per node only)."""

    values: torch.Tensor
    hours: tuple[int, ...] | None = None

    @classmethod
    def from_steps(cls, task: ForecastTask, steps: np.ndarray, chunk: int = 32) -> Climatology:
        """The climatology of the time steps ``steps`` (the training split); valid entries only, and the
        per-node mean where an hour of the day has no valid entry at a node (0, the training mean, where
        the node has none at all)."""
        steps = np.asarray(steps, dtype=np.int64)
        if not steps.size:
            raise DataError(f"{task.data.source}: the training split holds no time step to compute a climatology")
        hod = _hours_of_day(task.data.times[steps])
        present, counts = np.unique(hod, return_counts=True)
        by_hour = len(present) > 1 and bool((counts >= 2).all())
        buckets = present if by_hour else np.zeros(1, dtype=np.int64)
        index = np.searchsorted(buckets, hod) if by_hour else np.zeros(len(steps), dtype=np.int64)
        n, v = task.data.num_nodes, task.data.num_vars
        total = torch.zeros(len(buckets), n, v, dtype=torch.float64)
        count = torch.zeros(len(buckets), n, v, dtype=torch.float64)
        for i in range(0, len(steps), chunk):
            x, m = task.fields(steps[i:i + chunk])
            b = torch.from_numpy(index[i:i + chunk])
            total.index_add_(0, b, (x.double() * m))
            count.index_add_(0, b, m.double())
        node_mean = total.sum(0) / count.sum(0).clamp_min(1)
        values = torch.where(count > 0, total / count.clamp_min(1), node_mean[None])
        return cls(values.float(), tuple(int(h) for h in buckets) if by_hour else None)

    def at_times(self, times: np.ndarray) -> torch.Tensor:
        """[B, N, V]: the climatology at ``times`` (datetime64)."""
        if self.hours is None:
            return self.values[0].expand(len(times), -1, -1)
        hours = np.asarray(self.hours)
        hod = _hours_of_day(times)
        pos = np.clip(np.searchsorted(hours, hod), 0, len(hours) - 1)
        found = hours[pos] == hod
        fallback = self.values.mean(0)
        rows = [self.values[p] if f else fallback for p, f in zip(pos, found, strict=True)]
        return torch.stack(rows)


def reach(task: ForecastTask, init: int, steps: set) -> int:
    """How many leads from ``init`` stay within the time steps ``steps`` (each of init + lead,
    init + 2·lead, ... in it); 0 when ``init`` is not in ``steps`` or lacks the history the model reads."""
    lead, back = task.lead, (task.history - 1) * task.lead
    if init - back < 0 or init not in steps:
        return 0
    k = 0
    while init + (k + 1) * lead in steps:
        k += 1
    return k


class Rollout:
    """Autoregressive forecasts of ``model`` for ``task`` on the full graph, from initial time steps."""

    def __init__(self, task: ForecastTask, model, graph, device="cpu", batch_size: int = 4):
        if not isinstance(task, ForecastTask):
            raise ConfigError(f"task={getattr(task, 'name', task)}: lead-time forecasts need task=forecast")
        self.task, self.model, self.graph = task, model, graph
        self.device, self.batch_size = torch.device(device), max(1, int(batch_size))

    @property
    def data(self):
        return self.task.data

    @torch.no_grad()
    def forecast(self, inits, leads: int) -> torch.Tensor:
        """Normalised states [B, leads, N, V] at init + lead, ..., init + leads·lead (the initial states and
        every step they read must lie in the data)."""
        task, lead = self.task, self.task.lead
        t0 = torch.as_tensor(np.asarray(inits), dtype=torch.long)
        window = []  # (state, validity) of the steps the next input reads, oldest first
        for h in reversed(range(task.history)):
            x, m = task.fields((t0 - h * lead).numpy())
            window.append((x.to(self.device), m.float().to(self.device)))
        was_training = self.model.training
        self.model.eval()
        out = []
        try:
            for k in range(leads):
                cur = window[-1][0]
                nxt = cur + self.model(task.inputs(window[::-1], t0 + k * lead), self.graph)
                out.append(nxt)
                window = [*window[1:], (nxt, torch.ones_like(nxt))]
        finally:
            self.model.train(was_training)
        return torch.stack(out, dim=1)


@dataclass
class LeadScores:
    """Sums over initial times, per method, lead and variable, that add up over batches and ranks
    (:meth:`flat` / :meth:`load_flat`), and the scores they give (:meth:`table`)."""

    leads: int
    num_vars: int
    sums: torch.Tensor = None  # float64 [methods, 5, leads, V]: Σa·e², Σa·e, Σa, Σ ACC, number of ACCs

    def __post_init__(self):
        if self.sums is None:
            self.sums = torch.zeros(len(METHODS), 5, self.leads, self.num_vars, dtype=torch.float64)

    def add(self, method: str, k: int, pred, truth, clim, valid, area) -> None:
        """Add one lead ``k`` (0-based) of a batch: ``pred``, ``truth``, ``clim`` [B, N, V] normalised (the
        scores are scaled to physical units in :meth:`table`), ``valid`` bool [B, N, V], ``area`` [N]."""
        s = self.sums[METHODS.index(method)]
        a = valid.double() * area.double()[None, :, None]
        err = pred.double() - truth.double()
        s[0, k] += (a * err**2).sum(dim=(0, 1))
        s[1, k] += (a * err).sum(dim=(0, 1))
        s[2, k] += a.sum(dim=(0, 1))
        if method == "climatology":
            return
        fa, oa = pred.double() - clim.double(), truth.double() - clim.double()
        num = (a * fa * oa).sum(dim=1)
        den = torch.sqrt((a * fa**2).sum(dim=1) * (a * oa**2).sum(dim=1))
        ok = den > 0
        s[3, k] += torch.where(ok, num / den.clamp_min(1e-300), 0.0).sum(dim=0)
        s[4, k] += ok.double().sum(dim=0)

    def flat(self) -> torch.Tensor:
        return self.sums.reshape(-1)

    def load_flat(self, flat: torch.Tensor) -> None:
        self.sums = flat.reshape(self.sums.shape).clone()

    def table(self, std) -> dict[str, dict[str, list[float]]]:
        """``{method: {score: [leads][V] values}}`` in physical units (NaN without a valid entry)."""
        std = torch.as_tensor(np.asarray(std, dtype=np.float64))
        out = {}
        for i, method in enumerate(METHODS):
            se, e, w, acc, nacc = self.sums[i]
            has = w > 0
            rmse = torch.where(has, torch.sqrt(se / w.clamp_min(1e-300)) * std, float("nan"))
            bias = torch.where(has, e / w.clamp_min(1e-300) * std, float("nan"))
            accm = torch.where(nacc > 0, acc / nacc.clamp_min(1), float("nan"))
            out[method] = {"rmse": rmse.tolist(), "bias": bias.tolist(), "acc": accm.tolist()}
        return out


def lead_hours(data, inits: np.ndarray, lead: int, leads: int) -> list[float]:
    """The lead times in hours: the median over ``inits`` of the time from init to init + k·lead."""
    times = np.asarray(data.times, dtype="datetime64[s]").astype(np.int64)
    out = []
    for k in range(1, leads + 1):
        ok = [i for i in inits if i + k * lead < len(times)]
        out.append(float(np.median([(times[i + k * lead] - times[i]) / 3600.0 for i in ok])) if ok else float("nan"))
    return out


def lead_label(hours: float) -> str:
    """A lead time as a metric-name token: ``6h``, ``1.5h``, ``48h``."""
    return f"{hours:g}h"


def score_leads(rollout: Rollout, climatology: Climatology, steps, leads: int | None = None,
                rank: int = 0, world: int = 1, comm=None) -> dict:
    """Roll out from every initial time of ``steps`` (one split) and score each lead.

    ``leads``: how many leads; None, the longest the split allows from its first usable initial time. Each
    lead is scored over the initial times from which it stays within ``steps``. With several ranks, batch
    ``j`` is rolled out by rank ``j mod world`` and one sum over ``comm`` gives every rank the result.
    Returns ``{"leads", "lead_hours", "inits", "per_lead_inits", "variables", "units", "scores"}`` with
    ``scores[method][score][k][v]``.
    """
    task, data = rollout.task, rollout.data
    steps = np.asarray(steps, dtype=np.int64)
    step_set = set(steps.tolist())
    reach_of = {int(t): reach(task, int(t), step_set) for t in steps}
    usable = {t: k for t, k in reach_of.items() if k > 0}
    if not usable:
        raise DataError(f"{data.source}: no initial time of the split has the history and a next step the "
                        f"forecast needs (lead {task.lead}, history {task.history}, {len(steps)} steps)")
    longest = max(usable.values())
    if leads is None:
        leads = longest
    if leads < 1 or leads > longest:
        raise ConfigError(f"leads={leads}: the split allows 1 to {longest} leads of {task.lead} step(s) "
                          f"({len(usable)} initial times)")
    per_lead = [sum(1 for k in usable.values() if k >= j) for j in range(1, leads + 1)]
    scores = LeadScores(leads, data.num_vars)
    area = torch.from_numpy(np.asarray(data.area, dtype=np.float64))
    # initial times grouped by how far they reach (up to ``leads``), so a batch never steps past the data
    groups: dict[int, list[int]] = {}
    for t, k in sorted(usable.items()):
        groups.setdefault(min(k, leads), []).append(t)
    j = 0
    for reach_k, inits in sorted(groups.items()):
        for i in range(0, len(inits), rollout.batch_size):
            chunk = np.asarray(inits[i:i + rollout.batch_size], dtype=np.int64)
            j += 1
            if (j - 1) % world != rank:
                continue
            _score_chunk(rollout, climatology, scores, chunk, reach_k, area)
    flat = scores.flat()
    if comm is not None and world > 1:
        comm.sum_control_(flat)
        scores.load_flat(flat)
    hours = lead_hours(data, np.asarray(sorted(usable)), task.lead, leads)
    return {"leads": leads, "lead_hours": hours, "inits": len(usable), "per_lead_inits": per_lead,
            "variables": list(data.variables), "units": list(data.units),
            "climatology": "per node and hour of day" if climatology.hours else "per node",
            "scores": scores.table(data.std)}


def _score_chunk(rollout: Rollout, climatology: Climatology, scores: LeadScores, chunk, leads: int, area) -> None:
    task, lead = rollout.task, rollout.task.lead
    pred = rollout.forecast(chunk, leads).cpu()
    x0, m0 = task.fields(chunk)
    for k in range(leads):
        t = chunk + (k + 1) * lead
        truth, mt = task.fields(t)
        valid = mt & m0
        clim = climatology.at_times(task.data.times[t])
        scores.add("model", k, pred[:, k], truth, clim, valid, area)
        scores.add("persistence", k, x0, truth, clim, valid, area)
        scores.add("climatology", k, clim, truth, clim, valid, area)


def metrics(result: dict, prefix: str = "eval") -> dict[str, float]:
    """MLflow metrics of :func:`score_leads`'s result: ``eval/<score>/<var>/<lead>`` for the model and
    ``eval/<method>/<score>/<var>/<lead>`` for the baselines (lead as ``6h``)."""
    out = {}
    labels = [lead_label(h) for h in result["lead_hours"]]
    for method, table in result["scores"].items():
        head = prefix if method == "model" else f"{prefix}/{method}"
        for score, rows in table.items():
            if method == "climatology" and score == "acc":
                continue
            for k, row in enumerate(rows):
                for v, value in zip(result["variables"], row, strict=True):
                    out[f"{head}/{score}/{v}/{labels[k]}"] = value
    return out


def format_table(result: dict) -> str:
    """The terminal table: per variable and lead, the model's RMSE, bias and ACC beside the baselines'."""
    lines = [f"lead-time scores: {result['inits']} initial times, climatology {result['climatology']} "
             "(RMSE and bias in the variable's units; latitude / area weighted)"]
    head = ("variable", "lead", "inits", "rmse", "persistence", "climatology", "bias", "acc", "acc persist.")
    rows = [head]
    sc = result["scores"]
    for v, var in enumerate(result["variables"]):
        for k in range(result["leads"]):
            rows.append((var, lead_label(result["lead_hours"][k]), str(result["per_lead_inits"][k]),
                         *(_num(x) for x in (sc["model"]["rmse"][k][v], sc["persistence"]["rmse"][k][v],
                                             sc["climatology"]["rmse"][k][v], sc["model"]["bias"][k][v])),
                         _num(sc["model"]["acc"][k][v], ".3f"), _num(sc["persistence"]["acc"][k][v], ".3f")))
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines += ["  ".join(c.ljust(w) if i < 1 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True)))
              for r in rows]
    return "\n".join(lines)


def _num(v, fmt: str = ".4g") -> str:
    return "nan" if v is None or v != v else format(v, fmt)
