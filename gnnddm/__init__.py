"""gnnddm: domain-decomposition training of graph neural networks on weather and climate graphs."""

__version__ = "0.1.0"
