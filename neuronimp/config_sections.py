"""The sections of an experiment config (pydantic models, unknown keys forbidden), one class per section.

`neuronimp.config` assembles them into `Config` and turns validation errors into one-line messages.
"""
from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from neuronimp.errors import closest

PATH_METHODS = ("activation", "grad_x_act", "internal_influence", "conductance")
ALL_METHODS = PATH_METHODS + (
    "layer_ig",
    "deeplift",
    "lrp_epsilon",
    "lrp_gamma",
    "ablation_zero",
    "ablation_mean",
    "ablation_baseline",
    "selectivity",
    "lrp_zplus",
    "random",
)


class Strict(BaseModel):
    """Base: unknown keys are errors, values are validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=())


class ModelCfg(Strict):
    """Which network, with which weights."""

    name: str = "digits_cnn"
    weights: str = "none"  # none | imagenet | path to a local checkpoint (state dict, weights_only=True)
    options: dict[str, Any] = Field(default_factory=dict)


class DataCfg(Strict):
    """Which inputs: a registered dataset, its options, which split and how many items."""

    name: str = "digits"
    split: Literal["train", "test", "dev"] = "test"
    limit: int | None = Field(default=None, ge=1)
    options: dict[str, Any] = Field(default_factory=dict)


class AttributionCfg(Strict):
    """How importance is computed (the engine)."""

    n_steps: int = Field(default=50, ge=1, le=100_000)
    rule: Literal["riemann_left", "trapezoid", "gauss_legendre"] = "trapezoid"
    step_chunk: int = Field(default=16, ge=1)  # interpolation points per forward/backward pass
    baseline: str = "zero"  # zero | mean | blur | path to a tensor file (.pt)
    blur_sigma: float = Field(default=5.0, gt=0)
    target: Literal["predicted", "label"] | int = "predicted"
    delta_tolerance: float = Field(default=0.05, ge=0)  # relative to |F(x) - F(x')|
    lrp_epsilon: float = Field(default=1e-6, gt=0)
    lrp_gamma: float = Field(default=0.25, ge=0)
    random_seed: int = 0


class TrainCfg(Strict):
    """Training hyper-parameters (`neuronimp train`)."""

    epochs: int = Field(default=10, ge=1)
    batch_size: int = Field(default=64, ge=1)
    optimizer: Literal["adam", "sgd", "adadelta"] = "adam"
    lr: float = Field(default=1e-3, gt=0)
    momentum: float = Field(default=0.9, ge=0, le=1)
    weight_decay: float = Field(default=0.0, ge=0)
    adadelta_rho: float = Field(default=0.95, gt=0, lt=1)
    max_norm: float | None = Field(default=None, gt=0)
    fit_target: float | None = Field(default=None, gt=0, le=1)  # stop once train accuracy reaches this
    select_on_dev: bool = False  # report test accuracy at the best dev epoch (Kim 2014)
    checkpoint: str = "results/checkpoints/model.pt"


class AblateCfg(Strict):
    """Study 1: ablation until the prediction flips (Dhamdhere et al. 2018, sec. 5)."""

    ablation: list[Literal["zero", "mean", "baseline"]] = Field(default_factory=lambda: ["zero"])
    max_k: int = Field(default=64, ge=1)  # K: stop at k = min(K, units) when the label has not flipped
    random_draws: int = Field(default=3, ge=0, le=1000)  # random orders per image (method "random")
    record_logits: bool = False  # also record the target logit at every k = 0..K (no early stop)
    correlation: bool = True  # rank correlation of scores with single-unit ablation drops
    chunk: int = Field(default=4, ge=1)  # k values per image in the first suffix batch; doubles after
    max_rows: int = Field(default=512, ge=1)  # ablated activations per suffix call (memory bound)


DELETE_ORDER_NAMES = ("random", "accuracy_drop") + tuple(m for m in ALL_METHODS if m != "random")


class DeleteNetCfg(Strict):
    """One network family of the deletion study: a registered model name and its options (no weights)."""

    name: str
    options: dict[str, Any] = Field(default_factory=dict)


class DeleteCfg(Strict):
    """Study 2: cumulative deletion (Morcos et al. 2018)."""

    orders: list[str] = Field(default_factory=lambda: ["random"])  # random | NAME[:most|:least]
    ablation: list[Literal["zero", "mean"]] = Field(default_factory=lambda: ["zero"])
    random_draws: int = Field(default=3, ge=1)
    n_levels: int = Field(default=11, ge=2)
    noise_scales: list[float] = Field(default_factory=list)  # noise sd = scale * the unit's empirical sd
    noise_draws: int = Field(default=1, ge=1)
    corruptions: list[float] = Field(default_factory=lambda: [0.0])
    seeds: list[int] = Field(default_factory=lambda: [0])
    eval_limit: int | None = Field(default=None, ge=1)  # first N items of each split for the curves
    models: list[DeleteNetCfg] = Field(default_factory=list)  # empty: the config's model (name, options)
    scope: list[Literal["layer", "all"]] = Field(default_factory=lambda: ["layer"])  # each layer alone | all at once
    score_limit: int = Field(default=256, ge=1)  # training items whose mean engine score orders the units
    stats_limit: int = Field(default=2000, ge=2)  # items for unit means, sds (train) and class means (test)
    selectivity: bool = True  # per-unit selectivity vs single-unit accuracy drop, Spearman per layer
    figures: bool = True  # write PNG figures beside the tables

    @field_validator("corruptions")
    @classmethod
    def _fractions(cls, v: list[float]) -> list[float]:
        for f in v:
            if not 0.0 <= f <= 1.0:
                raise ValueError(f"corruption fraction {f} is outside [0, 1]")
        return v

    @field_validator("noise_scales")
    @classmethod
    def _scales(cls, v: list[float]) -> list[float]:
        for s in v:
            if s < 0:
                raise ValueError(f"noise scale {s} is negative")
        return v

    @field_validator("orders")
    @classmethod
    def _orders(cls, v: list[str]) -> list[str]:
        for o in v:
            name, _, way = o.partition(":")
            if name not in DELETE_ORDER_NAMES:
                hint = closest(name, DELETE_ORDER_NAMES)
                raise ValueError(f"unknown order {name!r}; allowed: {', '.join(DELETE_ORDER_NAMES)}, each with "
                                 f"an optional ':most' or ':least'" + (f" (did you mean {hint!r}?)" if hint else ""))
            if way not in ("", "most", "least") or (name == "random" and way):
                raise ValueError(f"order {o!r}: the suffix must be ':most' or ':least' (none for random)")
        return v


class SelectCfg(Strict):
    """Study 3: top-k unit selection and a logistic-regression probe (Dhamdhere et al. 2018, sec. 6).

    Defaults and their reasons: docs/select_results.md ("Choices the paper leaves open").
    """

    task: str = "custom"  # a name for the rows and the summary
    classes: list[str | int] = Field(default_factory=list)  # WordNet ids, class names or indices
    random_classes: int | None = Field(default=None, ge=2)  # draw this many of `classes` (or of all) per draw
    draws: int = Field(default=1, ge=1)  # class draws (random_classes) or image re-draws (fixed classes)
    ks: list[int] = Field(default_factory=lambda: [5, 10, 15, 20])
    per_class: int = Field(default=50, ge=2)  # images per class, drawn from data.split
    select_per_class: int = Field(default=30, ge=1)  # of which these select units and fit the probe
    splits: int = Field(default=1, ge=1)  # resampled selection/evaluation splits per draw
    target: Literal["label", "predicted"] = "label"  # the class each image is scored for
    merge: Literal["round_robin", "rank_sum", "mean_score"] = "round_robin"
    use_abs: bool = False  # rank by the mean of |score| instead of the signed mean
    aggregate: Literal["mean", "contrast"] = "mean"  # contrast: a class's mean minus the other classes' mean
    features: Literal["pooled", "flat"] = "pooled"  # what the probe sees of a unit
    standardize: bool = True  # z-score the probe's features (fitted on the selection images)
    probe_c: float = Field(default=1.0, gt=0)  # inverse L2 strength of the logistic regression
    max_iter: int = Field(default=2000, ge=10)
    random_draws: int = Field(default=5, ge=0)  # random-unit control draws per split (0: none)
    all_units: bool = True  # also fit the probe on every unit of the layer
    reference: Literal["water_vessels", "random_labels"] | None = None  # paper row shown beside ours

    @field_validator("ks")
    @classmethod
    def _ks(cls, v: list[int]) -> list[int]:
        if not v:
            raise ValueError("give at least one k")
        if any(k < 1 for k in v):
            raise ValueError("every k must be >= 1")
        return sorted(set(v))

    @field_validator("classes")
    @classmethod
    def _classes(cls, v: list[str | int]) -> list[str | int]:
        if len({str(c) for c in v}) != len(v):
            raise ValueError("a class is listed twice")
        return v

    @field_validator("random_classes")
    @classmethod
    def _random_classes(cls, v: int | None, info: ValidationInfo) -> int | None:
        listed = info.data.get("classes") or []
        if v is not None and listed and v > len(listed):
            raise ValueError(f"exceeds the {len(listed)} classes listed in select.classes to draw from")
        return v

    @field_validator("select_per_class")
    @classmethod
    def _select_per_class(cls, v: int, info: ValidationInfo) -> int:
        per_class = info.data.get("per_class")
        if per_class is not None and v >= per_class:
            raise ValueError(f"must be < select.per_class ({per_class}) so every class keeps evaluation images")
        return v


class SentimentCfg(Strict):
    """The Kim CNN filter analysis (`neuronimp filters`, `neuronimp explain`; Dhamdhere et al. 2018, sentiment CNN)."""

    target: Literal["margin", "predicted"] = "margin"  # margin: logit[positive] - logit[negative]
    zero_tol: float = Field(default=0.01, ge=0)  # |conductance| below this counts as zero
    almost_always: float = Field(default=0.9, gt=0.5, le=1)  # share of non-zero cases with one sign
    min_nonzero: int = Field(default=5, ge=1)  # fewer non-zero cases: the filter is 'rarely active'
    negators: list[str] = Field(default_factory=lambda: ["not", "n't", "never"], min_length=1)
    sentiment_words: Literal["builtin", "train"] = "builtin"  # built-in lexicon, or top words per label
    top_words: int = Field(default=50, ge=1)  # per label, when sentiment_words = train
    min_word_count: int = Field(default=5, ge=1)  # train words seen fewer times are not candidates
    max_pairs: int = Field(default=500, ge=1)  # minimal pairs built from the analysed split (at most)
    examples: int = Field(default=3, ge=0)  # highlighted sentences per filter in the HTML report
    report_filters: int = Field(default=10, ge=0)  # filters shown in the terminal and the HTML report
    sign_map_sentences: int = Field(default=0, ge=0)  # sentences drawn in the sign-map PNG (0: all)


class SlurmCfg(Strict):
    """`--launcher slurm`: the job array's resources, passed to submitit (docs/runner_notes.md)."""

    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    constraint: str | None = None
    gpus_per_node: int = Field(default=1, ge=0)
    cpus_per_task: int = Field(default=4, ge=1)
    mem_gb: float = Field(default=16.0, gt=0)
    timeout_min: int = Field(default=60, ge=1)
    array_parallelism: int = Field(default=32, ge=1)  # shards running at once
    setup: list[str] = Field(default_factory=list)  # shell lines run first in each job (module load ...)
    additional: dict[str, Any] = Field(default_factory=dict)  # any other sbatch option, e.g. {exclude: node7}
    cluster: Literal["slurm", "local", "debug"] = "slurm"  # submitit executor; local/debug try it without Slurm
    wait: bool = True  # wait for the array, then merge; false: print the job ids and return


class RunnerCfg(Strict):
    """Where and how it runs: device, batching, output, sharding."""

    device: str = "auto"  # auto | cpu | cuda | cuda:N
    batch_size: int = Field(default=32, ge=1)
    num_workers: int = Field(default=0, ge=0)
    dtype: Literal["float32", "float64"] = "float32"
    autocast: Literal["none", "bf16", "fp16"] = "none"
    tf32: bool = False
    channels_last: bool = False
    threads: int | None = Field(default=None, ge=1)  # CPU threads of torch (set_num_threads); default: torch's
    out: str = "results/run"
    format: Literal["csv", "parquet"] = "csv"
    progress: bool = True
    parallel: int | None = Field(default=None, ge=1)  # --launcher local: shards at once (default: GPUs or cores)
    slurm: SlurmCfg = Field(default_factory=SlurmCfg)
