"""``python -m gnnddm`` (and ``torchrun -m gnnddm``) run the command line."""

from gnnddm.cli import entry

entry()
