"""The bad-input suite (issue 14): every command, every kind of mistake, one line.

Each case runs one command (typer's CliRunner, in process) with one thing wrong and asserts the contract of
the README: exit code 2, exactly one line on stderr starting with `error:`, no traceback, and the output
folder unchanged apart from finished part files (a snapshot of file hashes before and after). The integrity
cases truncate or flip a byte of a part file, a shard table and a checkpoint, and assert a refusal naming
the file. The module shares one trained checkpoint, one finished run and one sharded run (made once).
"""
from __future__ import annotations

import hashlib
import io
import os
import pickle
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from contextlib import redirect_stderr
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from neuronimp.cli import app, main

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / "tests" / "data" / "tiny_score.yaml"  # digits_mlp width 16, 12 test digits, batches of 4
DIGITS_ABLATE = ROOT / "configs" / "digits_ablate.yaml"
LONG = "x" * 20_000
MODULE = "badinputs_user_models"  # a user-model module written to a temporary folder on sys.path

USER_MODELS = '''
from torch import nn


def no_units():
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 0), nn.ReLU(), nn.Linear(0, 10))


class WithAux(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
        self.aux = nn.Linear(10, 10)  # never called by forward

    def forward(self, x):
        return self.body(x)


def unreached():
    return WithAux()


def rgb():
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 2))
'''


# ---------------------------------------------------------------- helpers
def run(args: list[str]) -> tuple[int, str]:
    """Exit code and stderr of one in-process CLI call."""
    res = CliRunner().invoke(app, [str(a) for a in args])
    return res.exit_code, res.stderr


def snapshot(folder: Path | None) -> dict[str, str]:
    """Relative path -> SHA-256 of every file under `folder` (empty when there is none)."""
    if folder is None or not folder.exists():
        return {}
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def finished_part(rel: str) -> bool:
    """A file a finished batch may add: parts/<run>/manifest.json, batch-NNNNNN.json, batch-NNNNNN.<t>.csv."""
    p = Path(rel)
    return p.parts[0] == "parts" and (p.name == "manifest.json" or
                                      (p.name.startswith("batch-") and p.suffix in (".json", ".csv")))


def sets(*items: str) -> list[str]:
    return [a for s in items for a in ("--set", s)]


@dataclass
class Env:
    """What a case may use: a fresh folder, the shared run products (copied on demand)."""

    tmp: Path
    shared: dict[str, Path]
    watch: list[Path] = field(default_factory=list)

    @property
    def out(self) -> Path:
        """The output folder of a failing run (watched: it must stay as it was)."""
        out = self.tmp / "out"
        if out not in self.watch:
            self.watch.append(out)
        return out

    def copy(self, name: str) -> Path:
        """A private copy of a shared folder (a finished run, a sharded run), watched."""
        dst = self.tmp / name
        shutil.copytree(self.shared[name], dst)
        self.watch.append(dst)
        return dst

    def checkpoint(self) -> Path:
        """A private copy of the trained checkpoint and its sidecar."""
        src = self.shared["ckpt"]
        for f in (src, src.with_name(src.name + ".json")):
            shutil.copy(f, self.tmp / f.name)
        return self.tmp / src.name

    def file(self, name: str, data: bytes | str) -> Path:
        p = self.tmp / name
        p.write_bytes(data.encode() if isinstance(data, str) else data)
        return p

    def score(self, *overrides: str, command: str = "score", config: Path = TINY) -> list[str]:
        return [command, "--config", config, *sets(f"runner.out={self.out}", *overrides)]


Case = Callable[[Env], tuple[list[str], tuple[str, ...]]]
CASES: dict[str, Case] = {}


def case(name: str) -> Callable[[Case], Case]:
    def deco(fn: Case) -> Case:
        assert name not in CASES
        CASES[name] = fn
        return fn
    return deco


def flip(path: Path, at: int | None = None) -> None:
    """Flip one byte in the middle of `path` (same size)."""
    data = bytearray(path.read_bytes())
    i = len(data) // 2 if at is None else at
    data[i] ^= 0x01
    path.write_bytes(bytes(data))


def cut(path: Path) -> None:
    """Cut `path` mid-row: keep the first 60% of its bytes."""
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * 0.6)])


def first(folder: Path, pattern: str) -> Path:
    found = sorted(folder.glob(pattern))
    assert found, (folder, pattern)
    return found[0]


class Payload:
    """A pickled object: a file holding it carries code."""

    def __reduce__(self) -> tuple:
        return (os.getcwd, ())


def png(path: Path, rgb: tuple[int, int, int]) -> None:
    from PIL import Image

    Image.new("RGB", (8, 8), rgb).save(path)


def image_folder(env: Env, corrupt_second: bool = False) -> Path:
    """Two class folders of 8x8 RGB images and a txt class index; optionally a corrupt second image."""
    root = env.tmp / "images"
    for w, colour in (("n00000001", (200, 10, 10)), ("n00000002", (10, 200, 10))):
        (root / w).mkdir(parents=True)
        png(root / w / "a.png", colour)
    if corrupt_second:
        (root / "n00000001" / "b.png").write_bytes(b"not an image" * 10)
    (root / "index.txt").write_text("n00000001 red\nn00000002 green\n")
    return root


def image_sets(root: Path) -> list[str]:
    return ["data.name=imagenet_folder", f"data.options={{root: '{root}', class_index: '{root / 'index.txt'}'}}",
            "data.limit=null"]


# ---------------------------------------------------------------- Click's own usage errors
CLICK = {
    "click_unknown_option": (["score", "--bogus"], ("No such option: --bogus", "neuronimp score --help")),
    "click_misspelt_option": (["score", "--sett", "x"], ("--sett", "--set")),
    "click_missing_required_option": (["score"], ("Missing option '--config'",)),
    "click_option_without_value": (["score", "-c"], ("'-c' requires an argument",)),
    "click_missing_argument_layers": (["layers"], ("Missing argument 'model'",)),
    "click_missing_argument_merge": (["merge"], ("Missing argument 'folder'",)),
    "click_not_an_integer": (["explain", "-c", TINY, "--unit", "abc"], ("Invalid value for '--unit'",)),
    "click_unknown_command": (["scroe"], ("No such command 'scroe'",)),
    "click_extra_argument": (["models", "extra"], ("unexpected extra argument",)),
    "click_data_fetch_without_name": (["data", "fetch"], ("Missing argument 'name'",)),
    "click_data_list_unknown_option": (["data", "list", "--chek"], ("No such option: --chek",)),
    "click_merge_count_not_integer": (["merge", ".", "--count", "two"], ("Invalid value for '--count'",)),
    "click_report_unknown_option": (["report", ".", "--pdf"], ("No such option: --pdf",)),
}
for _name, (_args, _needles) in CLICK.items():
    case(_name)(lambda env, a=_args, n=_needles: (list(a), n))


# ---------------------------------------------------------------- configs and overrides
@case("config_missing")
def _(env: Env):
    return env.score(config=env.tmp / "nope.yaml"), ("config file not found",)


@case("config_is_a_folder")
def _(env: Env):
    return ["validate", env.tmp], ("config file not found",)


@case("config_not_utf8")
def _(env: Env):
    return ["validate", env.file("c.yaml", b"name: \xff\xfe\n")], ("cannot read config",)


@case("config_malformed_yaml")
def _(env: Env):
    return env.score(config=env.file("c.yaml", "methods: [activation\n")), ("malformed YAML", "line")


@case("config_not_a_mapping")
def _(env: Env):
    return ["validate", env.file("c.yaml", "- a\n- b\n")], ("must be a mapping",)


@case("config_unknown_key")
def _(env: Env):
    return env.score("runner.batchsize=4"), ("unknown key 'runner.batchsize'", "did you mean 'batch_size'")


@case("config_wrong_type")
def _(env: Env):
    return env.score("runner.batch_size=many"), ("runner.batch_size", "'many'")


@case("config_out_of_range")
def _(env: Env):
    return ["validate", TINY, *sets("attribution.n_steps=0")], ("attribution.n_steps", "greater than")


@case("config_bad_literal")
def _(env: Env):
    return env.score("data.split=tset"), ("data.split", "'tset'")


@case("override_without_equals")
def _(env: Env):
    return env.score("attribution.n_steps"), ("expected KEY=VALUE",)


@case("override_bad_yaml")
def _(env: Env):
    return env.score("attribution.n_steps=[1"), ("--set attribution.n_steps", "not valid YAML")


@case("seed_beyond_64_bits")
def _(env: Env):
    return env.score(f"seed={2**70}"), ("seed", "less than or equal to")


@case("random_seed_beyond_64_bits")
def _(env: Env):
    return ["validate", TINY, *sets(f"attribution.random_seed={2**64}")], ("attribution.random_seed",)


@case("negative_seed")
def _(env: Env):
    return ["validate", TINY, *sets("seed=-1")], ("seed = -1", "greater than or equal to 0")


# ---------------------------------------------------------------- names: models, data, methods, layers, studies
@case("unknown_model")
def _(env: Env):
    return env.score("model.name=digits_mpl"), ("unknown model 'digits_mpl'", "did you mean 'digits_mlp'")


@case("unknown_model_option_validate")
def _(env: Env):
    return ["validate", TINY, *sets("model.options={widht: 16}")], ("takes no option 'widht'",)


@case("unknown_dataset")
def _(env: Env):
    return env.score("data.name=digit"), ("unknown dataset 'digit'", "did you mean 'digits'")


@case("unknown_data_option")
def _(env: Env):
    return ["validate", TINY, *sets("data.options={test_fractoin: 0.3}")], ("test_fractoin", "test_fraction")


@case("data_option_wrong_type")
def _(env: Env):
    return env.score("data.options={test_fraction: abc}"), ("data.options.test_fraction = 'abc'", "number")


@case("data_option_corrupt_not_a_number")
def _(env: Env):
    return ["validate", TINY, *sets("data.options={corrupt: abc}")], ("data.options.corrupt = 'abc'",)


@case("unknown_method")
def _(env: Env):
    return env.score("methods=[conductanse]"), ("unknown method 'conductanse'", "did you mean 'conductance'")


@case("unknown_layer_validate")
def _(env: Env):
    return ["validate", TINY, *sets("layers=[relu9]")], ("unknown layer 'relu9'", "did you mean 'relu2'")


@case("unknown_layer_score")
def _(env: Env):
    return env.score("layers=[relu9]"), ("unknown layer 'relu9'", "allowed")


@case("unknown_layer_ablate")
def _(env: Env):
    return env.score("model.weights=none", "layers=[conv9]", command="ablate", config=DIGITS_ABLATE), \
        ("unknown layer 'conv9'",)


@case("unknown_study")
def _(env: Env):
    return ["run", "scroe", "-c", TINY], ("unknown study 'scroe'", "did you mean 'score'")


@case("layers_unknown_model")
def _(env: Env):
    return ["layers", "googlenett"], ("unknown model 'googlenett'", "did you mean 'googlenet'")


@case("layers_bad_option")
def _(env: Env):
    return ["layers", "digits_mlp", "--option", "widht=3"], ("takes no option 'widht'",)


@case("layers_option_without_equals")
def _(env: Env):
    return ["layers", "digits_mlp", "--option", "width"], ("--option 'width': expected KEY=VALUE",)


@case("long_model_name_shortened")
def _(env: Env):
    return env.score(f"model.name={LONG}"), ("unknown model 'xxxx", "...'")


@case("long_layer_name_shortened")
def _(env: Env):
    return ["validate", TINY, *sets(f"layers=[{LONG}]")], ("unknown layer 'xxxx", "...'")


@case("long_key_shortened")
def _(env: Env):
    return env.score(f"runner.{LONG}=1"), ("unknown key 'runner.xxxx", "...'")


# ---------------------------------------------------------------- target, device, output folder
@case("target_too_large_validate")
def _(env: Env):
    return ["validate", TINY, *sets("attribution.target=99")], ("attribution.target = 99", "0..9")


@case("target_negative_score")
def _(env: Env):
    return env.score("attribution.target=-1"), ("attribution.target = -1", "0..9")


@case("target_too_large_ablate")
def _(env: Env):
    return env.score("model.weights=none", "attribution.target=10", command="ablate", config=DIGITS_ABLATE), \
        ("attribution.target = 10",)


@case("device_mps_missing")
def _(env: Env):
    return env.score("runner.device=mps"), ("runner.device = 'mps'", "available here: auto, cpu")


@case("device_cuda_index_missing_validate")
def _(env: Env):
    return ["validate", TINY, *sets("runner.device=cuda:97")], ("runner.device = 'cuda:97'", "available here")


@case("device_not_a_name")
def _(env: Env):
    return env.score("runner.device=gpu"), ("runner.device = 'gpu'", "not a device name")


@case("out_name_too_long")
def _(env: Env):
    return env.score(f"runner.out={env.tmp / ('r' * 300)}"), ("bytes long", "at most")


@case("out_name_too_long_validate")
def _(env: Env):
    return ["validate", TINY, *sets(f"runner.out={env.tmp / ('r' * 256) / 'x'}")], ("bytes long",)


@case("out_parent_is_a_file")
def _(env: Env):
    blocker = env.file("afile", "x")
    env.watch.append(blocker)
    return env.score(f"runner.out={blocker / 'out'}"), ("afile is a file, not a folder",)


@case("out_is_a_file")
def _(env: Env):
    blocker = env.file("afile", "x")
    env.watch.append(blocker)
    return env.score(f"runner.out={blocker}"), ("is a file", "give a folder path")


# ---------------------------------------------------------------- user code
@case("user_model_stdlib")
def _(env: Env):
    return env.score("model.name=os:system"), ("'os' is part of Python's standard library",)


@case("user_model_missing_module")
def _(env: Env):
    return env.score("model.name=user:no_such_pkg_14.models:make"), ("cannot import 'no_such_pkg_14.models'",)


@case("user_model_syntax_error")
def _(env: Env):
    env.file("badinputs_syntax.py", "def make(:\n    pass\n")
    return env.score("model.name=user:badinputs_syntax:make", "model.options={input_shape: [1, 8, 8]}"), \
        ("syntax error",)


@case("layer_without_units")
def _(env: Env):
    return env.score(f"model.name=user:{MODULE}:no_units", "model.options={input_shape: [1, 8, 8]}",
                     "layers=['1']"), ("layer '1'", "has no units", "[0]")


@case("layer_never_reached")
def _(env: Env):
    return env.score(f"model.name=user:{MODULE}:unreached", "model.options={input_shape: [1, 8, 8]}",
                     "layers=[aux]"), ("layer 'aux'", "never reached")


# ---------------------------------------------------------------- data: shapes, workers, NaN
@case("rgb_images_for_a_1_channel_model")
def _(env: Env):
    root = image_folder(env)
    return env.score("model.name=digits_cnn", "model.options={}", *image_sets(root)), \
        ("shape [3, 8, 8]", "takes [1, 8, 8]", "3 channels")


@case("worker_error_is_one_line")
def _(env: Env):
    root = image_folder(env, corrupt_second=True)
    return env.score(f"model.name=user:{MODULE}:rgb", "model.options={input_shape: [3, 8, 8]}", *image_sets(root),
                     "runner.num_workers=1", "runner.batch_size=1"), ("cannot read image", "b.png")


@case("nan_inputs")
def _(env: Env):
    from neuronimp.data import write_idx

    root = env.tmp / "mnist"
    root.mkdir()
    images = np.full((4, 28, 28), 50.0, np.float32)
    images[2, 1, 1] = np.nan
    write_idx(root / "train-images-idx3-ubyte", images)
    write_idx(root / "train-labels-idx1-ubyte", np.arange(4, dtype=np.uint8))
    write_idx(root / "t10k-images-idx3-ubyte", images)
    write_idx(root / "t10k-labels-idx1-ubyte", np.arange(4, dtype=np.uint8))
    return env.score("model.name=mnist_mlp", "model.options={width: 8}", "data.name=mnist",
                     f"data.options={{root: '{root}'}}", "data.limit=4"), ("input ids 2 contain NaN",)


# ---------------------------------------------------------------- baselines
@case("baseline_missing")
def _(env: Env):
    return env.score(f"attribution.baseline={env.tmp / 'b.pt'}"), ("attribution.baseline", "zero, mean, blur")


@case("baseline_nan")
def _(env: Env):
    b = env.tmp / "b.pt"
    torch.save(torch.full((1, 8, 8), float("nan")), b)
    return env.score(f"attribution.baseline={b}"), (f"baseline file {b}", "NaN or inf")


@case("baseline_not_a_tensor")
def _(env: Env):
    b = env.tmp / "b.pt"
    torch.save({"x": torch.zeros(1)}, b)
    return ["validate", TINY, *sets(f"attribution.baseline={b}")], ("holds a dict, not a tensor",)


@case("baseline_wrong_shape")
def _(env: Env):
    b = env.tmp / "b.pt"
    torch.save(torch.zeros(3, 5, 5), b)
    return env.score(f"attribution.baseline={b}"), ("has shape (3, 5, 5)", "takes inputs of shape (1, 8, 8)")


# ---------------------------------------------------------------- checkpoints
@case("checkpoint_missing")
def _(env: Env):
    return env.score(f"model.weights={env.tmp / 'none.pt'}"), ("not found",)


@case("checkpoint_carries_code")
def _(env: Env):
    p = env.tmp / "m.pt"
    torch.save({"model": Payload()}, p)
    return env.score(f"model.weights={p}"), ("carries code", "getcwd")


@case("checkpoint_plain_pickle_carries_code")
def _(env: Env):
    p = env.file("m.pkl", pickle.dumps({"model": Payload()}, protocol=4))
    return env.score(f"model.weights={p}"), ("carries code", "getcwd")


@case("checkpoint_nan_weights")
def _(env: Env):
    from neuronimp.models import create_model

    state = create_model("digits_mlp", width=16).model.state_dict()
    state["fc1.weight"][0, 0] = float("nan")
    p = env.tmp / "m.pt"
    torch.save(state, p)
    return env.score(f"model.weights={p}"), ("fc1.weight", "NaN or inf")


@case("checkpoint_other_model")
def _(env: Env):
    p = env.tmp / "m.pt"
    torch.save(torch.nn.Linear(2, 2).state_dict(), p)
    return env.score(f"model.weights={p}"), ("does not fit model 'digits_mlp'",)


@case("checkpoint_garbage")
def _(env: Env):
    return env.score(f"model.weights={env.file('m.pt', b'garbage' * 20)}"), \
        ("corrupt or truncated", "unpickling failed: Unsupported operand")


@case("checkpoint_truncated")
def _(env: Env):
    p = env.checkpoint()
    cut(p)
    return env.score(f"model.weights={p}"), (f"checkpoint {p} is truncated",)


@case("checkpoint_byte_flipped")
def _(env: Env):
    p = env.checkpoint()
    flip(p)
    return env.score(f"model.weights={p}"), (f"checkpoint {p} was altered",)


@case("checkpoint_sidecar_garbage")
def _(env: Env):
    p = env.checkpoint()
    p.with_name(p.name + ".json").write_text("{not json")
    return env.score(f"model.weights={p}"), ("sidecar", "unreadable")


# ---------------------------------------------------------------- resume integrity: part files
def resume(env: Env) -> tuple[Path, list[str]]:
    run_dir = env.copy("finished")
    return run_dir, ["score", "--config", TINY, *sets(f"runner.out={run_dir}")]


@case("part_truncated")
def _(env: Env):
    run_dir, args = resume(env)
    part = first(run_dir / "parts" / "score", "batch-000001.scores.csv")
    cut(part)
    return args, (f"part file {part}", "truncated or altered")


@case("part_byte_flipped")
def _(env: Env):
    run_dir, args = resume(env)
    part = first(run_dir / "parts" / "score", "batch-000002.scores.csv")
    flip(part)
    return args, (f"part file {part}", "truncated or altered")


@case("part_missing")
def _(env: Env):
    run_dir, args = resume(env)
    part = first(run_dir / "parts" / "score", "batch-000000.scores.csv")
    part.unlink()
    return args, (f"part file {part} is missing",)


@case("batch_record_unreadable")
def _(env: Env):
    run_dir, args = resume(env)
    record = first(run_dir / "parts" / "score", "batch-000000.json")
    record.write_text("{")
    return args, (f"{record} is unreadable",)


@case("parts_of_another_config")
def _(env: Env):
    run_dir, args = resume(env)
    return [*args, *sets("attribution.n_steps=5")], ("partial results of a different config",)


# ---------------------------------------------------------------- merge integrity: shard tables
def merge(env: Env) -> tuple[Path, list[str]]:
    folder = env.copy("sharded")
    return folder, ["merge", folder]


@case("shard_table_truncated")
def _(env: Env):
    folder, args = merge(env)
    table = first(folder, "scores.shard-0001-of-0002.csv")
    cut(table)
    return args, (f"{table} was truncated or altered",)


@case("shard_table_byte_flipped")
def _(env: Env):
    folder, args = merge(env)
    table = first(folder, "scores.shard-0000-of-0002.csv")
    flip(table)
    return args, (f"{table} was truncated or altered",)


@case("shard_missing")
def _(env: Env):
    folder, args = merge(env)
    first(folder, "scores.shard-0001-of-0002.csv").unlink()
    return args, ("missing shard(s) 1/2",)


@case("shard_meta_missing")
def _(env: Env):
    folder, args = merge(env)
    first(folder, "scores.shard-0000-of-0002.meta.json").unlink()
    return args, ("scores.shard-0000-of-0002.csv has no", "meta.json")


@case("merge_unknown_table")
def _(env: Env):
    folder, args = merge(env)
    return [*args, "--name", "scroes"], ("scroes",)


@case("merge_folder_missing")
def _(env: Env):
    return ["merge", env.tmp / "nope"], ("is not a folder",)


@case("merge_no_shards")
def _(env: Env):
    return ["merge", env.tmp], ("no shard tables",)


@case("shard_out_of_range")
def _(env: Env):
    return env.score() + ["--shard", "2/2"], ("--shard '2/2'",)


@case("shard_with_launcher")
def _(env: Env):
    return env.score() + ["--shard", "0/2", "--launcher", "local"], ("--shard and --launcher exclude each other",)


@case("launcher_checks_layers_before_any_job")
def _(env: Env):
    return env.score("layers=[relu9]") + ["--launcher", "local"], ("unknown layer 'relu9'",)


@case("unknown_launcher")
def _(env: Env):
    return env.score() + ["--launcher", "slrum"], ("did you mean 'slurm'",)


# ---------------------------------------------------------------- the other commands
@case("plot_nothing_to_plot")
def _(env: Env):
    env.watch.append(env.tmp)
    return ["plot", env.tmp], ("nothing to plot",)


@case("report_not_a_folder")
def _(env: Env):
    return ["report", env.tmp / "nope"], ("is not a folder",)


@case("data_fetch_unknown_name")
def _(env: Env):
    return ["data", "fetch", "mnsit"], ("unknown data set to fetch 'mnsit'", "mnist")


@case("explain_unit_out_of_range")
def _(env: Env):
    return env.score("layers=[relu2]", command="explain") + ["--unit", "999"], ("--unit 999", "allowed: 0..15")


@case("explain_index_out_of_range")
def _(env: Env):
    return env.score("layers=[relu2]", command="explain") + ["--unit", "0", "--index", "500"], \
        ("--index 500", "allowed: 0..11")


@case("train_loss_not_finite")
def _(env: Env):
    ckpt = env.checkpoint()  # an existing good checkpoint: never replaced by a diverged one
    env.watch.append(ckpt)
    return env.score("train.epochs=1", "train.lr=1e30", "train.optimizer=sgd", f"train.checkpoint={ckpt}",
                     command="train"), ("loss is", "no checkpoint")


@case("train_checkpoint_under_a_file")
def _(env: Env):
    blocker = env.file("afile", "x")
    env.watch.append(blocker)
    return env.score("train.epochs=1", f"train.checkpoint={blocker / 'm.pt'}", command="train"), \
        ("afile is a file, not a folder",)


@case("ablate_random_without_draws")
def _(env: Env):
    return env.score("model.weights=none", "data.limit=4", "methods=[random]", "ablate.random_draws=0",
                     command="ablate", config=DIGITS_ABLATE), ("ablate.random_draws = 0",)


@case("delete_with_a_checkpoint")
def _(env: Env):
    return env.score(f"model.weights={env.checkpoint()}", command="delete"), ("trains its networks",)


@case("select_without_classes")
def _(env: Env):
    return env.score(command="select"), ("select.classes", "select.random_classes")


@case("filters_on_images")
def _(env: Env):
    return env.score(command="filters"), ("the filter analysis needs a Kim CNN",)


# ---------------------------------------------------------------- the shared run products (made once)
@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    """A trained checkpoint (with sidecar), a finished score run and a score run in 2 shards; user models."""
    base = tmp_path_factory.mktemp("bad_inputs_shared")
    (base / f"{MODULE}.py").write_text(textwrap.dedent(USER_MODELS))
    sys.path.insert(0, str(base))
    ckpt = base / "ckpt" / "mlp.pt"
    code, err = run(["train", "-c", TINY, *sets("train.epochs=1", f"train.checkpoint={ckpt}",
                                                f"runner.out={base / 'train'}")])
    assert code == 0, err
    code, err = run(["score", "-c", TINY, *sets(f"runner.out={base / 'finished'}")])
    assert code == 0, err
    for i in range(2):
        code, err = run(["score", "-c", TINY, "--shard", f"{i}/2", *sets(f"runner.out={base / 'sharded'}")])
        assert code == 0, err
    try:
        yield {"ckpt": ckpt, "finished": base / "finished", "sharded": base / "sharded", "base": base}
    finally:
        sys.path.remove(str(base))
        sys.modules.pop(MODULE, None)


# ---------------------------------------------------------------- the contract
@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input(name: str, shared: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(tmp_path))  # user modules a case writes (syntax error)
    env = Env(tmp_path, shared)
    args, needles = CASES[name](env)
    before = {str(w): snapshot(w) for w in env.watch}
    code, err = run(args)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2, (code, err)
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    assert len(lines[0]) < 2000, lines[0][:300]  # nothing echoed whole (a 20,000-character name)
    for needle in needles:
        assert str(needle) in lines[0], (needle, lines[0])
    for w in env.watch:
        old, new = before[str(w)], snapshot(w)
        assert {k: v for k, v in new.items() if k in old} == old, f"{w}: a file was changed or removed"
        added = sorted(set(new) - set(old))
        assert all(finished_part(a) for a in added), f"{w}: unexpected new files {added}"


def test_sixty_distinct_cases_across_every_command(shared: dict[str, Path], tmp_path: Path) -> None:
    commands = set()
    for i, name in enumerate(sorted(CASES)):
        (tmp_path / str(i)).mkdir()
        args, _ = CASES[name](Env(tmp_path / str(i), shared))
        commands.add(" ".join(str(a) for a in args[:2]) if args[0] == "data" else str(args[0]))
    assert len(CASES) >= 60
    assert {"validate", "layers", "models", "score", "ablate", "delete", "select", "filters", "explain", "train",
            "merge", "plot", "report", "data fetch", "data list", "run"} <= commands, commands


def test_worker_case_keeps_the_finished_batch(shared: dict[str, Path], tmp_path: Path) -> None:
    """The worker error comes after a finished batch: its part stays, no table is written."""
    env = Env(tmp_path, shared)
    args, _ = CASES["worker_error_is_one_line"](env)
    code, err = run(args)
    assert code == 2, err
    assert not (env.out / "scores.csv").exists()
    assert (env.out / "parts" / "score" / "batch-000000.scores.csv").is_file()


def test_entry_point_main_prints_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    """`neuronimp.cli:main` (the console script): Click's errors are one line, exit code 2."""
    with pytest.raises(SystemExit) as exit_:
        main(["score", "--config"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.splitlines() == ["error: Option '--config' requires an argument."]
    buf = io.StringIO()
    with redirect_stderr(buf), pytest.raises(SystemExit) as exit_:
        main(["validate", str(TINY), "--set", "attribution.target=10"])
    assert exit_.value.code == 2 and buf.getvalue().count("\n") <= 1


def test_python_m_prints_one_line_for_click_errors() -> None:
    proc = subprocess.run([sys.executable, "-m", "neuronimp.cli", "ablate", "--confg", "x.yaml"],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: neuronimp ablate: No such option: --confg"), lines
    assert "--config" in lines[0] and "Traceback" not in proc.stderr
