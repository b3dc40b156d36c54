"""The parameters every importance method reads: a small frozen dataclass (methods never see the config).

`neuronimp.config.AttributionCfg` validates the same fields from YAML and turns into this with `.params()`.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MethodParams:
    """Integration grid, memory chunking, tolerances and rule constants of the methods."""

    n_steps: int | str = 50          # intervals of the path grid (Dhamdhere et al. eq. 3 discretised), or "auto"
    rule: str = "trapezoid"          # riemann_left | trapezoid | simpson | gauss_legendre (methods/grid.py)
    step_chunk: int = 16             # interpolation points per forward/backward pass
    delta_tolerance: float = 0.05    # |completeness delta| / |F(x) - F(x')| above which a run warns
    lrp_epsilon: float = 1e-6
    lrp_gamma: float = 0.25
    random_seed: int = 0
    shapley_permutations: int = 64   # Monte Carlo permutations per input (method shapley; exact when cheaper)
    shapley_truncation: float = 0.0  # TMC truncation, relative to |v(all) - v(none)| (0: none)
    shapley_ablation: str = "zero"   # zero | mean | baseline: the value of a unit outside the coalition
    start_steps: int = 8             # n_steps "auto": the first grid, doubled per input until the delta is small
    max_steps: int = 1024            # n_steps "auto": the cap

    @property
    def auto(self) -> bool:
        """Whether n_steps is chosen per input (path.adaptive_sweep)."""
        return self.n_steps == "auto"
