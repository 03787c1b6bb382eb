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
"""
