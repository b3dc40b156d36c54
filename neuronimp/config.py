"""Experiment configs: YAML (yaml.safe_load) -> pydantic models that forbid unknown keys.

Precedence: built-in defaults < the YAML file < `--set a.b=c` overrides. Every validation failure becomes a
one-line `UsageError` naming the file, the key, and the allowed values (with the closest match).

The config is assembled from its sections: model, data and attribution here, `train` from training.py,
`runner` from runner/settings.py, and one section per registered study, declared by the study itself
(`Study.section`), so a plug-in study brings its own keys.
"""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, Field, ValidationError, create_model, field_validator, model_validator

from neuronimp.errors import UsageError, closest, file_in_the_way, shorten, shown
from neuronimp.methods.grid import NESTED_RULES
from neuronimp.methods.params import MethodParams
from neuronimp.runner.settings import RunnerCfg, SlurmCfg  # noqa: F401 (re-exported)
from neuronimp.schema import Strict
from neuronimp.training import TrainCfg

DEFAULT_METHODS = ("activation", "grad_x_act", "internal_influence", "conductance")
SEED_MAX = 2**63 - 1  # torch.manual_seed and numpy's generators take any seed in 0..2^63-1
RANDOM_SEED_MAX = 2**32 - 1  # the `random` method derives per-input 64-bit seeds from it (catalog.random_scores)


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

    n_steps: Annotated[int, Field(ge=1, le=100_000)] | Literal["auto"] = 50  # auto: per input, to delta_tolerance
    rule: Literal["riemann_left", "trapezoid", "simpson", "gauss_legendre"] = "trapezoid"
    start_steps: int = Field(default=8, ge=1, le=100_000)  # n_steps auto: first grid, doubled per input
    max_steps: int = Field(default=1024, ge=1, le=100_000)  # n_steps auto: the cap
    step_chunk: int = Field(default=16, ge=1)  # interpolation points per forward/backward pass
    baseline: str = "zero"  # zero | mean | blur | path to a tensor file (.pt)
    blur_sigma: float = Field(default=5.0, gt=0)
    target: Literal["predicted", "label"] | int = "predicted"
    delta_tolerance: float = Field(default=0.05, ge=0)  # relative to |F(x) - F(x')|
    lrp_epsilon: float = Field(default=1e-6, gt=0)
    lrp_gamma: float = Field(default=0.25, ge=0)
    random_seed: int = Field(default=0, ge=0, le=RANDOM_SEED_MAX)
    shapley_permutations: int = Field(default=64, ge=1, le=1_000_000)  # method shapley: permutations per input
    shapley_truncation: float = Field(default=0.0, ge=0, lt=1)  # TMC truncation, relative to |v(all) - v(none)|
    shapley_ablation: Literal["zero", "mean", "baseline"] = "zero"  # a unit outside the coalition

    @model_validator(mode="after")
    def _steps(self) -> "AttributionCfg":
        if self.n_steps == "auto" and self.rule not in NESTED_RULES:
            raise ValueError(f"n_steps: auto refines nested grids; rule {self.rule!r} has none (allowed with auto: "
                             f"{', '.join(NESTED_RULES)})")
        if self.rule == "simpson" and self.n_steps != "auto" and self.n_steps % 2:
            raise ValueError(f"rule simpson needs an even n_steps, got {self.n_steps}")
        if self.rule == "simpson" and self.start_steps % 2:
            raise ValueError(f"rule simpson needs an even start_steps, got {self.start_steps}")
        return self

    def params(self) -> MethodParams:
        """The methods' parameters (a plain dataclass: methods never see the config)."""
        return MethodParams(n_steps=self.n_steps, rule=self.rule, step_chunk=self.step_chunk,
                            delta_tolerance=self.delta_tolerance, lrp_epsilon=self.lrp_epsilon,
                            lrp_gamma=self.lrp_gamma, random_seed=self.random_seed, start_steps=self.start_steps,
                            max_steps=self.max_steps, shapley_permutations=self.shapley_permutations,
                            shapley_truncation=self.shapley_truncation, shapley_ablation=self.shapley_ablation)


class ConfigBase(Strict):
    """The sections every experiment has; `config_class()` adds one per registered study."""

    name: str = "experiment"
    seed: int = Field(default=0, ge=0, le=SEED_MAX)
    model: ModelCfg = Field(default_factory=ModelCfg)
    data: DataCfg = Field(default_factory=DataCfg)
    layers: list[str] = Field(default_factory=list)  # empty: the model's default layer
    # what a unit of each layer is: auto | channel | feature | token for every layer, or {layer: axis} (others auto);
    # auto: channel for conv maps, feature for [batch, tokens, features] and dense layers (methods/units.py)
    units: str | dict[str, str] = "auto"
    methods: list[str] = Field(default_factory=lambda: list(DEFAULT_METHODS))
    attribution: AttributionCfg = Field(default_factory=AttributionCfg)
    train: TrainCfg = Field(default_factory=TrainCfg)
    runner: RunnerCfg = Field(default_factory=RunnerCfg)

    @field_validator("methods")
    @classmethod
    def _methods(cls, v: list[str]) -> list[str]:
        from neuronimp.methods import METHODS

        names = METHODS.names()
        for m in v:
            if m not in METHODS:
                hint = closest(m, names)
                raise ValueError(f"unknown method {shown(m)}; allowed: {', '.join(names)}"
                                 + (f" (did you mean {hint!r}?)" if hint else ""))
        return v

    @field_validator("units", mode="before")
    @classmethod
    def _units(cls, v: Any) -> Any:
        from neuronimp.methods.units import UNIT_CHOICES

        if isinstance(v, dict):  # `--set units.blocks.0=token` nests the dotted layer name: flatten it back
            flat: dict[str, Any] = {}
            stack = [("", v)]
            while stack:
                prefix, d = stack.pop()
                for k, val in d.items():
                    key = f"{prefix}.{k}" if prefix else str(k)
                    if isinstance(val, dict):
                        stack.append((key, val))
                    else:
                        flat[key] = val
            v = flat
        for layer, a in v.items() if isinstance(v, dict) else [(None, v)]:
            if a not in UNIT_CHOICES:
                hint = closest(str(a), UNIT_CHOICES)
                where = f"layer {layer!r}: {a!r} is not" if layer is not None else "not"
                raise ValueError(f"{where} a unit axis; allowed: {', '.join(UNIT_CHOICES)}, or a mapping layer -> axis"
                                 + (f" (did you mean {hint!r}?)" if hint else ""))
        return v


_CLASSES: dict[tuple[Any, ...], type[ConfigBase]] = {}


def study_sections() -> dict[str, type[BaseModel]]:
    """Config key -> section model of every registered study that declares one."""
    from neuronimp.studies import STUDIES

    out: dict[str, type[BaseModel]] = {}
    for name in STUDIES.names():
        st = STUDIES.get(name)
        if st.section is not None:
            out[st.section_key or st.name] = st.section
    return out


def config_class() -> type[ConfigBase]:
    """The experiment config model: the common sections plus each registered study's own section."""
    sections = study_sections()
    key = tuple(sorted((k, id(v)) for k, v in sections.items()))
    if key not in _CLASSES:
        fields: dict[str, Any] = {k: (v, Field(default_factory=v)) for k, v in sections.items()}
        _CLASSES[key] = create_model("Config", __base__=ConfigBase, **fields)
    return _CLASSES[key]


Config = config_class()  # the built-in studies' config (plug-ins registered later: call config_class())


def __getattr__(name: str) -> Any:
    """Section models by their class name (e.g. AblateCfg), for code that imported them from here."""
    for section in study_sections().values():
        if section.__name__ == name:
            return section
    raise AttributeError(name)


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
        allowed = _allowed_keys(config_class(), loc)
        hint = closest(str(loc[-1]), allowed)
        msg = f"{source}: unknown key {shown(key)}; allowed here: {', '.join(allowed)}"
        return msg + (f" (did you mean {hint!r}?)" if hint else "")
    if err["type"] == "literal_error":
        return f"{source}: {shorten(key)} = {shown(err.get('input'))} is not allowed; {err['msg'].lower()}"
    msg = str(err["msg"]).removeprefix("Value error, ")
    return f"{source}: {shorten(key)} = {shown(err.get('input'))}: {msg}"


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


def parse_overrides(items: list[str] | None, flag: str = "--set",
                    example: str = "attribution.n_steps=100") -> list[tuple[str, Any]]:
    """Parse `--set a.b=c` items; values are read as YAML scalars/lists (`3`, `true`, `[a, b]`)."""
    out: list[tuple[str, Any]] = []
    for item in items or []:
        if "=" not in item:
            raise UsageError(f"{flag} {shown(item)}: expected KEY=VALUE, e.g. {flag} {example}")
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw) if raw != "" else ""
        except yaml.YAMLError as exc:
            raise UsageError(f"{flag} {shorten(key)}: value {shown(raw)} is not valid YAML "
                             f"({exc.__class__.__name__})") from None
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


def build_config(tree: dict[str, Any], source: str = "<config>") -> Any:
    """Validate a raw mapping into a Config, turning the first error into a one-line UsageError."""
    try:
        return config_class().model_validate(tree)
    except ValidationError as exc:
        errs = exc.errors()
        extra = f" (and {len(errs) - 1} more)" if len(errs) > 1 else ""
        raise UsageError(_describe(errs[0], source) + extra) from None


def load_config(path: str | Path | None, overrides: list[str] | None = None) -> Any:
    """Defaults < YAML file < --set overrides; validated, names checked against the registries."""
    tree = read_yaml(path) if path is not None else {}
    source = str(path) if path is not None else "<defaults>"
    for key, value in parse_overrides(overrides):
        _set_dotted(tree, key, value)
    cfg = build_config(tree, source)
    check_names(cfg, source)
    return cfg


def check_names(cfg: ConfigBase, source: str) -> None:
    """Check names that live in registries (model, dataset) and the baseline file."""
    from neuronimp.data import DATASETS, check_data_options
    from neuronimp.models import MODELS, announce_user_code

    dynamic = ":" in cfg.model.name or cfg.model.name.startswith("timm/")  # user entry points, any timm model
    if not dynamic:
        MODELS.canonical(cfg.model.name, where=f"{source}: model.name")
    DATASETS.canonical(cfg.data.name, where=f"{source}: data.name")
    check_data_options(cfg.data.name, cfg.data.options, where=f"{source}: data.options")  # types, ranges
    announce_user_code(cfg.model.name, where=f"{source}: model.name")  # refuses os:system; warns user code
    # Checkpoint files and data folders are checked when they are opened, not here: configs for ImageNet
    # and for checkpoints that `neuronimp train` has yet to write must still validate offline.
    b = cfg.attribution.baseline
    if b not in ("zero", "mean", "blur"):
        if not Path(b).expanduser().is_file():
            raise UsageError(f"{source}: attribution.baseline = {shown(b)}: allowed: zero, mean, blur, or a path "
                             "to a tensor file (.pt)")
        from neuronimp.methods.baselines import read_baseline_file

        read_baseline_file(b)  # a tensor, all finite (small: read here, and again when the run uses it)
    check_out_path(cfg.runner.out, f"{source}: runner.out")


def _is_dir(p: Path) -> bool:
    try:
        return p.is_dir()
    except OSError:
        return False


def check_out_path(out: str | Path, where: str = "runner.out") -> Path:
    """Refuse an output folder that cannot exist: a component longer than the file system allows (NAME_MAX,
    usually 255 bytes), a path longer than PATH_MAX, or a parent that is a file. Nothing is created."""
    import os

    path = Path(out).expanduser()
    full = path.absolute()
    probe = next((p for p in full.parents if _is_dir(p)), Path("/"))
    try:
        name_max = os.pathconf(probe, "PC_NAME_MAX")
        path_max = os.pathconf(probe, "PC_PATH_MAX")
    except (OSError, ValueError, AttributeError):
        name_max, path_max = 255, 4096
    for part in full.parts:
        if len(os.fsencode(part)) > name_max:
            raise UsageError(f"{where} = {shown(str(out), 240)}: the name {shown(part)} is {len(os.fsencode(part))} "
                             f"bytes long; this file system allows at most {name_max} per file or folder name")
    if len(os.fsencode(str(full))) >= path_max:
        raise UsageError(f"{where} = {shown(str(out), 240)}: the path is {len(os.fsencode(str(full)))} bytes long; "
                         f"this file system allows at most {path_max - 1}")
    blocker = file_in_the_way(full)
    if blocker is not None:
        what = "is a file" if blocker == full else f"cannot be made: {shorten(blocker, 240)} is a file, not a folder"
        raise UsageError(f"{where} = {shown(str(out), 240)} {what}; give a folder path")
    return path


def dump_config(cfg: ConfigBase) -> str:
    """The resolved config as YAML (written beside every result)."""
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
