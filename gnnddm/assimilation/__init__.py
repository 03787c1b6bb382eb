"""Data assimilation: synthetic observations and backgrounds from a gridded truth (OSSE), optimal
interpolation as the reference, and the task that trains a GNN to produce the analysis."""
