"""Studies: pure generators of result rows (no I/O, no progress bars, no device logic).

`ablate`: ablation in order of importance until the prediction flips (Dhamdhere et al. 2018, sec. 5).
"""
