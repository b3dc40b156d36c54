"""The papers' numbers, in one place: what our tables and reports are set beside.

- Dhamdhere, Sundararajan & Yan 2018, sec. 5 (ablation until the flip) and the feature-selection table;
- Morcos, Barrett, Rabinowitz & Botvinick 2018 (cumulative deletion);
- Ghorbani & Zou 2020 (Neuron Shapley).
"""
from __future__ import annotations

# Dhamdhere et al. 2018, sec. 5: GoogLeNet mixed4d, 100 ImageNet images, units zeroed in order of importance
PAPER_FLIPS = {
    ("conductance", "zero"): {"mean k": "3.7", "> 10 units": "3/100", "max k": "16", "flipped by top 10": ""},
    ("internal_influence", "zero"): {"mean k": "", "> 10 units": "", "max k": "", "flipped by top 10": "5/100"},
}
PAPER_CURVES_NOTE = ("paper (Morcos et al. 2018): networks that memorise (trained on randomised labels) lose accuracy "
                     "faster under cumulative ablation than networks that generalise, and a unit's class "
                     "selectivity predicts its importance poorly.")
PAPER_SELECT_NOTE = ("paper (Dhamdhere et al. 2018, feature-selection table): accuracy (%) of a classifier on the "
                     "top-k units; 'paper:' rows give the published numbers where the task matches.")
FLIPS_SENTENCE = ("paper (GoogLeNet mixed4d, 100 ImageNet images, zero ablation): conductance order flips after "
                  "3.7 units on average, 3 of 100 images need more than 10, maximum 16; the top 10 by internal "
                  "influence flip only 5 of 100")
PAPER_FLIPS_NOTE = FLIPS_SENTENCE.replace("paper (", "paper (Dhamdhere et al. 2018, ", 1) + "."

PAPER_KS = (5, 10, 15, 20)
PAPER_SELECT: dict[str, dict[str, tuple[float, ...]]] = {  # Dhamdhere et al. 2018, feature-selection table
    "water_vessels": {
        "activation": (54.76, 61.90, 65.48, 69.05),
        "grad_x_act": (67.86, 83.33, 85.71, 88.10),
        "internal_influence": (50.00, 67.86, 73.81, 75.00),
        "conductance": (88.10, 94.05, 96.43, 94.05),
    },
    "random_labels": {
        "activation": (46.52, 48.51, 55.81, 60.45),
        "grad_x_act": (56.94, 76.01, 79.74, 84.39),
        "internal_influence": (48.50, 62.23, 71.37, 72.50),
        "conductance": (68.85, 81.58, 85.99, 87.79),
    },
}

PAPER_SHAPLEY = ("paper (Ghorbani & Zou 2020, fig. 2, Inception-v3 on ImageNet): removing the ~30 filters with the "
                 "largest Neuron Shapley values destroys the accuracy; as many filters by other rankings barely move it")
