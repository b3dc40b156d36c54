"""Importance methods: each turns a batch (and probe outputs) into one score per unit, [batch, units].

`compute_scores` is the single entry point; the path methods of all layers share one sweep.
"""
from __future__ import annotations

from neuronimp.methods.engine import METHODS, Scores, compute_scores

__all__ = ["METHODS", "Scores", "compute_scores"]
