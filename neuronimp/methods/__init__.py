"""Importance methods: each turns a batch (and probe outputs) into one score per unit, [batch, units].

Every method is registered by name in `METHODS` with one signature (`methods.spec`); `compute_scores` is
the single entry point, and the path methods of all layers share one sweep.
"""
from __future__ import annotations

from neuronimp.methods.catalog import random_scores
from neuronimp.methods.engine import Scores, check_delta, compute_scores, delta_message, delta_warnings, needs_stats
from neuronimp.methods.params import MethodParams
from neuronimp.methods.spec import METHODS, MethodCall, MethodSpec, method, path_methods, spec

__all__ = ["METHODS", "MethodCall", "MethodParams", "MethodSpec", "Scores", "check_delta", "compute_scores",
           "delta_message", "delta_warnings", "method", "needs_stats", "path_methods", "random_scores", "spec"]
