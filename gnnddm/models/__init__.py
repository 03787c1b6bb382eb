"""GNN architectures: ``model(x, graph) -> out`` on a prepared :class:`~gnnddm.models.graph.Graph`.

- :class:`gnnddm.models.gcn.GCN`, :class:`gnnddm.models.sage.GraphSAGE`: sum/mean aggregation as one CSR
  product over all samples of a batch (no per-edge messages).
- :class:`gnnddm.models.gatv2.GATv2`: per-edge attention, batched along the sample dimension.
- :class:`gnnddm.models.interaction.InteractionNetwork`: encoder-processor-decoder with edge latents.
- :class:`gnnddm.models.encode_process_decode.EncodeProcessDecode`: GraphCast's encoder, processor on a
  hidden mesh and decoder, on the joint grid + mesh graph of ``graph=icosahedral`` (its edge kinds one-hot
  in ``edge_attr``); depth ``processor_layers`` instead of ``layers``, ``processor_layers + 2``
  message-passing layers.

All take ``(in_channels, out_channels, edge_dim=0, hidden=64, layers=3, ...)``, accept ``x`` as
``[B, N, F]`` or ``[N, F]``, and expose ``num_message_passing_layers``: the overlap (in hops) a subdomain
needs for exact outputs on its owned nodes. That is the number of layers L, except for GCN (L + 1: its
normalisation reads the degree of every message's source, which depends on that node's neighbours).
They know nothing about partitions or processes.

Stages. Each model also exposes its forward pass as stages, ``encode(h, graph) -> state``,
``layer(k, state, graph) -> state`` for ``k < num_layers`` and ``decode(state, graph) -> out`` (node-major
``h`` = ``[N, B, F]``; ``state[0]`` is the node-major node features, further entries per-edge latents),
with ``forward`` their composition. Only ``layer`` passes messages, so a caller may replace rows of
``state[0]`` between layers: that is where :mod:`gnnddm.ddm.halo_sync` exchanges halo features. A model
stays ignorant of why.

Execution. The stages are :func:`~gnnddm.models.execution.stage` methods: ``trainer.precision=bf16`` runs their
dense products in bf16 and ``trainer.compile`` compiles them (:mod:`gnnddm.models.execution`), without changing
what passes between stages (float32 states).

Depth. The residual models (GraphSAGE with ``residual=True``, InteractionNetwork, EncodeProcessDecode) are
forward-Euler discretisations of an ODE in depth, ``h_{k+1} = h_k + τ_k F(h_k; θ_k)``, and expose it for
multilevel training in depth (:mod:`gnnddm.ddm.depth`):

- ``layer_steps``: the steps ``τ_k``, a list of floats, one per layer ``k < num_layers``, 1.0 by default.
  With ``τ_k = 1`` a layer does exactly the floating-point operations of a plain residual layer
  (:func:`~gnnddm.models.common.scaled` skips the product), so the default changes no result.
- ``residual_layers() -> list[int]``: the layers ``k`` computing ``h + τ_k F(h)``, whose parameter tensors
  have the same shapes; ``τ_k`` of the other layers is not used.
- ``layer_module(k) -> nn.Module``: the module holding the parameters of layer ``k``.
- ``keep_layers(keep)``: in place, keep only the layers ``keep`` (increasing; the dropped ones residual)
  with their steps, updating ``num_layers`` and ``num_message_passing_layers``. Called on a copy.
"""
