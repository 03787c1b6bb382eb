"""Rollout training: the loss over k autoregressive steps, with gradients through the rollout.

A forecast model ``f`` maps the state at t (and t − lead with ``history = 2``) to the increment to
t + lead. Trained on k steps from an initial time t, it is applied as :class:`gnnddm.tasks.rollout.Rollout`
applies it at inference: step j takes the state it predicted at t + (j − 1)·lead as its input, with every
entry valid, and the time features of its own input and target times::

    s_0 = x_t,        s_j = s_{j−1} + f(input_j(s_{j−1}, s_{j−2}, …)),        j = 1 … k

The loss is the weighted squared error of every step's state, as an increment to the initial state,

    L = Σ_{b, i, j, v} w_j[b, i, v] · ((s_j − x_t) − (x_{t+j·lead} − x_t))²,

with ``w_j`` the task's weights of the entries valid at t and at t + j·lead, normalised by the count of
such entries over all k steps: the mean over steps and entries. With k = 1 it is the one-step loss.

:class:`RolloutModel` is the k-step map as a model of its own, ``model(x, graph) -> [B, N, k·V]``, whose
stages (``encode``, ``layer`` 0 … k·L − 1, ``decode``) are the base model's stages run k times: every
``ddm`` algorithm trains it unchanged, ``halo_sync`` exchanging halos at each of its k·L layers. Between
two steps only node-local work runs (the base model's decode and encode, the next input), so the
contract of :mod:`gnnddm.models` holds: only ``layer`` passes messages. The per-node context the next
steps need (x_t, the current input states, the static and time features) and the steps' outputs ride as
two more entries at the end of the state. A caller that replaces the halo rows of ``state[0]`` between
layers need not exchange them: a halo row's context is its data (read from the batch) plus the decoded
increments of its ``state[0]`` rows at the step boundaries, which are the owners' rows just received, so
it equals the owner's; and its gradient reaches the owner through those rows. The halo bytes of a step
are those of one-step training. The receptive field is k·L hops (plus GCN's one), the overlap that makes
the subdomain problems of ``sync`` exact. :class:`RolloutBatches` assembles the matching k-step batches.

Training anchors need the longest rollout's leads in the training split
(:meth:`gnnddm.tasks.ForecastTask.split_anchors`), so the samples stay the same while a schedule
(``task.rollout_schedule``) lengthens the rollout; validation and test scores stay one-step, and
``trainer.eval_leads`` scores the rollouts.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from gnnddm.errors import ConfigError
from gnnddm.models.common import run_stages
from gnnddm.tasks import Batch, ForecastTask

TIME_FEATURES = 4  # width of Task.time_features


class RolloutModel(nn.Module):
    """``steps`` autoregressive applications of ``base`` as one model (module docstring).

    Its parameters are the base model's (the same tensors, in the same order), so an algorithm or optimizer
    built on it trains ``base``; set :attr:`steps` before a batch of that many steps.
    """

    def __init__(self, base: nn.Module, task: ForecastTask, steps: int = 1):
        super().__init__()
        self.base = base
        v, h = task.data.num_vars, task.history
        self.num_vars, self.history, self.static = v, h, int(task.data.static.shape[1])
        self.base_in = int(base.in_channels)
        if self.base_in != 2 * h * v + self.static + 2 * TIME_FEATURES:
            raise ValueError(f"the model reads {self.base_in} input channels, not the forecast task's "
                             f"{2 * h * v + self.static + 2 * TIME_FEATURES}")
        self.out_channels = v
        self.steps = int(steps)

    # ------------------------------------------------------------------ sizes
    @property
    def in_channels(self) -> int:
        """The first step's input and the target time features of steps 2 … k."""
        return self.base_in + TIME_FEATURES * (self.steps - 1)

    @property
    def num_layers(self) -> int:
        return self.steps * int(self.base.num_layers)

    @property
    def num_message_passing_layers(self) -> int:
        return self.receptive_field(self.steps)

    def receptive_field(self, steps: int) -> int:
        """The hops a node's output after ``steps`` steps depends on: k·L, plus what the base model reads
        beyond its layers (GCN's degrees: one hop)."""
        base = self.base
        return int(steps) * int(base.num_layers) + int(base.num_message_passing_layers) - int(base.num_layers)

    # ------------------------------------------------------------------ stages
    def encode(self, h: torch.Tensor, graph) -> tuple[torch.Tensor, ...]:
        v, hv, s = self.num_vars, 2 * self.history * self.num_vars, self.static
        first = h[..., : self.base_in]
        context = torch.cat([first[..., :v], first[..., : hv + s], first[..., -TIME_FEATURES:],
                             h[..., self.base_in:]], dim=-1)
        outs = h.new_zeros(h.shape[0], h.shape[1], 0)
        return (*self.base.encode(first, graph), context, outs)

    def layer(self, k: int, state: tuple[torch.Tensor, ...], graph) -> tuple[torch.Tensor, ...]:
        """Layer ``k % L`` of step ``k // L``; the first layer of a step after the first ends the previous
        step and builds the input of this one."""
        layers = int(self.base.num_layers)
        step, l = divmod(k, layers)
        if step >= self.steps:
            raise IndexError(f"layer {k} of a {self.steps}-step rollout of {layers} layers")
        inner, context, outs = state[:-2], state[-2], state[-1]
        if l == 0 and step > 0:  # node-local work only
            context, inner, outs = self._next_step(step, context, inner, outs, graph)
        return (*self.base.layer(l, inner, graph), context, outs)

    # the parameters' layers (gnnddm.ddm.blocks): the base's, tied across the steps
    def layer_module(self, k: int) -> nn.Module:
        """The base model's module of layer ``k % L`` (every step uses the same weights)."""
        return self.base.layer_module(k % int(self.base.num_layers))

    def head_modules(self) -> list[nn.Module]:
        return self.base.head_modules() if hasattr(self.base, "head_modules") else []

    def head_layer(self) -> int:
        """The first layer after which the decoder acts: the end of the first step, which the first layer of
        the second step decodes (:meth:`_next_step`); the last layer with one step."""
        return int(self.base.num_layers) if self.steps > 1 else self.num_layers - 1

    def decode(self, state: tuple[torch.Tensor, ...], graph) -> torch.Tensor:
        inner, context, outs = state[:-2], state[-2], state[-1]
        start = context[..., : self.num_vars]
        current = context[..., self.num_vars: 2 * self.num_vars]
        return torch.cat([outs, current + self.base.decode(inner, graph) - start], dim=-1)

    def _next_step(self, step: int, context, inner, outs, graph):
        """After step ``step`` (1-based count of steps done): its state, and the input of the next."""
        v, hv, s = self.num_vars, 2 * self.history * self.num_vars, self.static
        start, window = context[..., :v], context[..., v: v + hv]
        static, times = context[..., v + hv: v + hv + s], context[..., v + hv + s:]
        state = window[..., :v] + self.base.decode(inner, graph)
        outs = torch.cat([outs, state - start], dim=-1)
        # the new state, valid everywhere, then the previous input states, the oldest dropped
        window = torch.cat([state, torch.ones_like(state), window[..., : hv - 2 * v]], dim=-1)
        t_in = times[..., (step - 1) * TIME_FEATURES: step * TIME_FEATURES]
        t_out = times[..., step * TIME_FEATURES: (step + 1) * TIME_FEATURES]
        inner = self.base.encode(torch.cat([window, static, t_in, t_out], dim=-1), graph)
        return torch.cat([start, window, static, times], dim=-1), inner, outs

    def forward(self, x: torch.Tensor, graph) -> torch.Tensor:
        """``x`` [B, N, in_channels] or [N, in_channels] -> the k steps' increments to x_t, [..., k·V]."""
        return run_stages(self, x, graph)


class RolloutBatches:
    """The training batches of rollouts of :attr:`steps` steps (a task for
    :class:`gnnddm.data.prefetch.BatchStream`): ``x`` is the first step's input followed by the target-time
    features of steps 2 … k; ``y``, ``w``, ``base``, ``truth`` and ``valid`` stack the k steps along the
    variables ([B, N, k·V], step-major). Reads the longest rollout's steps whatever :attr:`steps` is, so
    that a batch read ahead serves whichever rollout the schedule asks for when it is assembled."""

    name = "forecast"

    def __init__(self, task: ForecastTask, steps: int = 1):
        self.task, self.steps = task, int(steps)

    def steps_of(self, t: torch.Tensor) -> torch.Tensor:
        task = self.task
        ahead = [t + j * task.lead for j in range(1, task.rollout + 1)]
        return torch.cat([t, *ahead, *(t - h * task.lead for h in range(1, task.history))])

    def read(self, anchors, nodes=None) -> tuple[torch.Tensor, torch.Tensor]:
        return self.task.fields(self.steps_of(torch.as_tensor(np.asarray(anchors), dtype=torch.long)), nodes)

    def draw(self, anchors, rng, split: str = "train") -> None:
        """Forecast batches draw nothing."""

    def batch(self, anchors: np.ndarray, rng=None, nodes=None, split: str = "train", fields=None) -> Batch:
        task, k = self.task, self.steps
        if not 1 <= k <= task.rollout:
            raise ValueError(f"a rollout of {k} steps; the training samples have {task.rollout}")
        t = torch.as_tensor(np.asarray(anchors), dtype=torch.long)
        b, lead = len(t), task.lead
        xs, ms = self.read(anchors, nodes) if fields is None else fields
        cur, m_cur = xs[:b], ms[:b]
        past = 1 + task.rollout  # where the history steps start among the blocks read
        states = [(cur, m_cur), *((xs[(past + h - 1) * b:(past + h) * b], ms[(past + h - 1) * b:(past + h) * b])
                                  for h in range(1, task.history))]
        # the first step's input, then the target-time features of steps 2 ... k
        feats = [task.inputs(states, t, nodes), *(task.time_features(t + j * lead, nodes) for j in range(2, k + 1))]
        truth = [xs[j * b:(j + 1) * b] for j in range(1, k + 1)]
        valid = [m_cur & ms[j * b:(j + 1) * b] for j in range(1, k + 1)]
        # the normalisation is that of the full batch over all k steps, also when only some rows are assembled
        if nodes is None:
            count = sum(v.sum() for v in valid)
        else:
            count = torch.tensor(sum(task._pair_count(int(a), j) for a in t for j in range(1, k + 1)))
        y = [torch.where(v, nxt - cur, torch.zeros_like(cur)) for v, nxt in zip(valid, truth, strict=True)]
        w = [task._weights(v, count, nodes) for v in valid]
        return Batch(x=torch.cat(feats, dim=-1), y=torch.cat(y, dim=-1), w=torch.cat(w, dim=-1),
                     base=cur.repeat(1, 1, k), truth=torch.cat(truth, dim=-1), valid=torch.cat(valid, dim=-1),
                     nodes=nodes)


class RolloutTraining:
    """The training model and batches of a forecast task whose rollout is longer than one step, kept at the
    schedule's rollout of the current iteration (:meth:`at`)."""

    def __init__(self, task: ForecastTask, model: nn.Module):
        if not isinstance(task, ForecastTask):
            raise ConfigError(f"task.rollout: rollout training needs task=forecast (got task={task.name})")
        self.task = task
        self.model = RolloutModel(model, task, task.rollout_at(1))
        self.batches = RolloutBatches(task, task.rollout_at(1))

    def at(self, iteration: int) -> int:
        """Set the rollout of ``iteration`` (before its batch is assembled); returns it."""
        k = self.task.rollout_at(iteration)
        self.model.steps = self.batches.steps = k
        return k
