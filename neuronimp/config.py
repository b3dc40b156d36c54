"""Experiment configs: YAML (yaml.safe_load) -> pydantic models that forbid unknown keys.

Precedence: built-in defaults < the YAML file < `--set a.b=c` overrides. Every validation failure becomes a
one-line `UsageError` naming the file, the key, and the allowed values (with the closest match).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from neuronimp.errors import UsageError, closest

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
    max_k: int = Field(default=64, ge=1)
    random_draws: int = Field(default=3, ge=0)
    record_logits: bool = False
    correlation: bool = True  # rank correlation of scores with single-unit ablation drops


class DeleteCfg(Strict):
    """Study 2: cumulative deletion (Morcos et al. 2018)."""

    orders: list[str] = Field(default_factory=lambda: ["random"])
    ablation: list[Literal["zero", "mean"]] = Field(default_factory=lambda: ["zero"])
    random_draws: int = Field(default=3, ge=1)
    n_levels: int = Field(default=11, ge=2)
    noise_scales: list[float] = Field(default_factory=list)
    corruptions: list[float] = Field(default_factory=lambda: [0.0])
    seeds: list[int] = Field(default_factory=lambda: [0])
    eval_limit: int | None = Field(default=None, ge=1)

    @field_validator("corruptions")
    @classmethod
    def _fractions(cls, v: list[float]) -> list[float]:
        for f in v:
            if not 0.0 <= f <= 1.0:
                raise ValueError(f"corruption fraction {f} is outside [0, 1]")
        return v


class SelectCfg(Strict):
    """Study 3: top-k unit selection (Dhamdhere et al. 2018, sec. 6)."""

    task: str = "custom"
    classes: list[str | int] = Field(default_factory=list)
    random_classes: int | None = Field(default=None, ge=2)
    draws: int = Field(default=1, ge=1)
    ks: list[int] = Field(default_factory=lambda: [5, 10, 15, 20])
    per_class: int = Field(default=50, ge=2)
    select_per_class: int = Field(default=30, ge=1)
    splits: int = Field(default=1, ge=1)
    merge: Literal["rank_sum", "round_robin", "mean_score"] = "round_robin"
    features: Literal["pooled", "flat"] = "pooled"
    use_abs: bool = False


class SentimentCfg(Strict):
    """The Kim CNN filter analysis (`neuronimp filters`, `neuronimp explain`; Dhamdhere et al. 2018, sec. 7)."""

    zero_tol: float = Field(default=0.01, ge=0)  # |conductance| below this counts as zero
    almost_always: float = Field(default=0.9, gt=0.5, le=1)  # share of non-zero cases with one sign
    min_nonzero: int = Field(default=5, ge=1)  # fewer non-zero cases: the filter is 'rarely active'
    negators: list[str] = Field(default_factory=lambda: ["not", "n't", "never"], min_length=1)
    sentiment_words: Literal["builtin", "train"] = "builtin"  # built-in lexicon, or top words per label
    top_words: int = Field(default=50, ge=1)  # per label, when sentiment_words = train
    min_word_count: int = Field(default=5, ge=1)  # train words seen fewer times are not candidates
    max_pairs: int = Field(default=500, ge=1)  # minimal pairs built from the analysed split (at most)
    examples: int = Field(default=5, ge=0)  # sentences per flipping filter in the HTML report
    sign_map_sentences: int = Field(default=0, ge=0)  # sentences drawn in the sign-map PNG (0: all)


class RunnerCfg(Strict):
    """Where and how it runs: device, batching, output, sharding."""

    device: str = "auto"  # auto | cpu | cuda | cuda:N
    batch_size: int = Field(default=32, ge=1)
    num_workers: int = Field(default=0, ge=0)
    dtype: Literal["float32", "float64"] = "float32"
    autocast: Literal["none", "bf16", "fp16"] = "none"
    tf32: bool = False
    channels_last: bool = False
    out: str = "results/run"
    format: Literal["csv", "parquet"] = "csv"
    progress: bool = True


class Config(Strict):
    """A whole experiment."""

    name: str = "experiment"
    seed: int = 0
    model: ModelCfg = Field(default_factory=ModelCfg)
    data: DataCfg = Field(default_factory=DataCfg)
    layers: list[str] = Field(default_factory=list)  # empty: the model's default layer
    methods: list[str] = Field(default_factory=lambda: list(PATH_METHODS))
    attribution: AttributionCfg = Field(default_factory=AttributionCfg)
    train: TrainCfg = Field(default_factory=TrainCfg)
    ablate: AblateCfg = Field(default_factory=AblateCfg)
    delete: DeleteCfg = Field(default_factory=DeleteCfg)
    select: SelectCfg = Field(default_factory=SelectCfg)
    sentiment: SentimentCfg = Field(default_factory=SentimentCfg)
    runner: RunnerCfg = Field(default_factory=RunnerCfg)

    @field_validator("methods")
    @classmethod
    def _methods(cls, v: list[str]) -> list[str]:
        for m in v:
            if m not in ALL_METHODS:
                hint = closest(m, ALL_METHODS)
                raise ValueError(
                    f"unknown method {m!r}; allowed: {', '.join(ALL_METHODS)}"
                    + (f" (did you mean {hint!r}?)" if hint else "")
                )
        return v


def _loc(loc: tuple[Any, ...]) -> str:
    return ".".join(str(p) for p in loc if not str(p).startswith("function-after"))


def _allowed_keys(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """The keys allowed at the parent of `loc` (for 'unknown key' messages)."""
    cur: Any = model
    for part in loc[:-1]:
        field = getattr(cur, "model_fields", {}).get(str(part))
        if field is None:
            return []
        cur = field.annotation
    return sorted(getattr(cur, "model_fields", {}))


def _describe(err: dict[str, Any], source: str) -> str:
    loc = tuple(err["loc"])
    key = _loc(loc)
    if err["type"] == "extra_forbidden":
        allowed = _allowed_keys(Config, loc)
        hint = closest(str(loc[-1]), allowed)
        msg = f"{source}: unknown key {key!r}; allowed here: {', '.join(allowed)}"
        return msg + (f" (did you mean {hint!r}?)" if hint else "")
    if err["type"] == "literal_error":
        return f"{source}: {key} = {err.get('input')!r} is not allowed; {err['msg'].lower()}"
    msg = str(err["msg"]).removeprefix("Value error, ")
    return f"{source}: {key} = {err.get('input')!r}: {msg}"


def _set_dotted(tree: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    cur = tree
    for p in parts[:-1]:
        nxt = cur.get(p)
        if not isinstance(nxt, dict):
            nxt = {}
            cur[p] = nxt
        cur = nxt
    cur[parts[-1]] = value


def parse_overrides(items: list[str] | None) -> list[tuple[str, Any]]:
    """Parse `--set a.b=c` items; values are read as YAML scalars/lists (`3`, `true`, `[a, b]`)."""
    out: list[tuple[str, Any]] = []
    for item in items or []:
        if "=" not in item:
            raise UsageError(f"--set {item!r}: expected KEY=VALUE, e.g. --set attribution.n_steps=100")
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw) if raw != "" else ""
        except yaml.YAMLError as exc:
            raise UsageError(f"--set {key}: value {raw!r} is not valid YAML ({exc.__class__.__name__})") from None
        out.append((key.strip(), value))
    return out


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping with yaml.safe_load; missing file or bad YAML -> UsageError."""
    p = Path(path)
    if not p.is_file():
        raise UsageError(f"{p}: config file not found")
    try:
        tree = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or exc.__class__.__name__
        raise UsageError(f"{p}: malformed YAML{where}: {problem}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"{p}: cannot read config: {exc}") from None
    if tree is None:
        tree = {}
    if not isinstance(tree, dict):
        raise UsageError(f"{p}: the top level must be a mapping of keys, got {type(tree).__name__}")
    return tree


def build_config(tree: dict[str, Any], source: str = "<config>") -> Config:
    """Validate a raw mapping into a Config, turning the first error into a one-line UsageError."""
    try:
        return Config.model_validate(tree)
    except ValidationError as exc:
        errs = exc.errors()
        extra = f" (and {len(errs) - 1} more)" if len(errs) > 1 else ""
        raise UsageError(_describe(errs[0], source) + extra) from None


def load_config(path: str | Path | None, overrides: list[str] | None = None) -> Config:
    """Defaults < YAML file < --set overrides; validated, names checked against the registries."""
    tree = read_yaml(path) if path is not None else {}
    source = str(path) if path is not None else "<defaults>"
    for key, value in parse_overrides(overrides):
        _set_dotted(tree, key, value)
    cfg = build_config(tree, source)
    check_names(cfg, source)
    return cfg


def check_names(cfg: Config, source: str) -> None:
    """Check names that live in registries (model, dataset) and the baseline file."""
    from neuronimp.data import DATASETS
    from neuronimp.models import MODELS

    dynamic = ":" in cfg.model.name or cfg.model.name.startswith("timm/")  # user entry points, any timm model
    if not dynamic:
        MODELS.canonical(cfg.model.name, where=f"{source}: model.name")
    DATASETS.canonical(cfg.data.name, where=f"{source}: data.name")
    # Checkpoint files and data folders are checked when they are opened, not here: configs for ImageNet
    # and for checkpoints that `neuronimp train` has yet to write must still validate offline.
    b = cfg.attribution.baseline
    if b not in ("zero", "mean", "blur") and not Path(b).expanduser().is_file():
        raise UsageError(
            f"{source}: attribution.baseline = {b!r}: allowed: zero, mean, blur, or a path to a tensor file (.pt)"
        )


def dump_config(cfg: Config) -> str:
    """The resolved config as YAML (written beside every result)."""
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
