"""GNN architectures: ``model(x, graph) -> out`` on a prepared :class:`~gnnddm.models.graph.Graph`.

- :class:`gnnddm.models.gcn.GCN`, :class:`gnnddm.models.sage.GraphSAGE`: sum/mean aggregation as one CSR
  product over all samples of a batch (no per-edge messages).
- :class:`gnnddm.models.gatv2.GATv2`: per-edge attention, batched along the sample dimension.
- :class:`gnnddm.models.interaction.InteractionNetwork`: encoder-processor-decoder with edge latents.

All take ``(in_channels, out_channels, edge_dim=0, hidden=64, layers=3, ...)``, accept ``x`` as
``[B, N, F]`` or ``[N, F]``, and expose ``num_message_passing_layers``: the overlap (in hops) a subdomain
needs for exact outputs on its owned nodes. That is the number of layers L, except for GCN (L + 1: its
normalisation reads the degree of every message's source, which depends on that node's neighbours).
They know nothing about partitions or processes.
"""
