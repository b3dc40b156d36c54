"""The `neuronimp` command line: parse, validate, call the runner. Each command is a few lines.

Every user mistake ends with one line on stderr and exit code 2 (no traceback).
"""
from __future__ import annotations

import functools
import importlib
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from typer.core import TyperGroup

from neuronimp.errors import UsageError, one_line

# Click's exceptions, wherever this Typer takes Click from (recent Typer versions carry their own copy)
_CLICK_EXC = sys.modules[next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException").__module__]


class OneLineGroup(TyperGroup):
    """The app's command group: Click's and Typer's own usage errors (an unknown option, a missing option or
    argument, a bad value) end like ours, with one line `error: ...` on stderr and exit code 2, not a box."""

    def main(self, args: Any = None, prog_name: str | None = None, complete_var: str | None = None,
             standalone_mode: bool = True, **extra: Any) -> Any:
        """Run the command line; in standalone mode every Click error is one line and the process exits."""
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except _CLICK_EXC.ClickException as exc:
            if type(exc).__name__ == "NoArgsIsHelpError":  # `neuronimp` alone: the help, as Click shows it
                exc.show()
                sys.exit(exc.exit_code)
            typer.echo(f"error: {_click_message(exc)}", err=True)
            sys.exit(2)
        except typer.Abort:
            typer.echo("error: aborted", err=True)
            sys.exit(1)
        sys.exit(rv if isinstance(rv, int) else 0)


def _click_message(exc: Any) -> str:
    """A Click error as one line: the command, the problem, and where the help is."""
    msg = one_line(exc.format_message())
    ctx = getattr(exc, "ctx", None)
    if isinstance(exc, _CLICK_EXC.UsageError) and ctx is not None:
        return f"{ctx.command_path}: {msg} (see {ctx.command_path} --help)"
    return msg


app = typer.Typer(name="neuronimp", cls=OneLineGroup, add_completion=False, no_args_is_help=True,
                  pretty_exceptions_enable=False,
                  help="How important is a neuron? Conductance and friends, and the studies of the papers.")

ConfigOpt = Annotated[Path, typer.Option("--config", "-c", help="YAML experiment config")]
SetOpt = Annotated[Optional[list[str]], typer.Option("--set", help="override a key: --set attribution.n_steps=100")]
ShardOpt = Annotated[Optional[str], typer.Option("--shard", help="run shard i/N of the inputs (0-based)")]
LauncherOpt = Annotated[Optional[str], typer.Option("--launcher", help="local | slurm: run all shards as jobs")]
ShardsOpt = Annotated[int, typer.Option("--shards", help="number of shards for --launcher")]


def usage_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn UsageError (and a few well-known user errors) into one line on stderr and exit code 2."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            if _PLUGIN_ERROR:
                raise UsageError(_PLUGIN_ERROR)
            return fn(*args, **kwargs)
        except UsageError as exc:
            typer.echo(f"error: {one_line(exc)}", err=True)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            typer.echo("interrupted: finished batches are kept; re-run the same command to resume", err=True)
            raise typer.Exit(130) from None

    return wrapper


def _config(config: Path, overrides: list[str] | None) -> Any:
    from neuronimp.config import load_config

    return load_config(config, overrides)


def _study(name: str, config: Path, overrides: list[str] | None, shard: str | None,
           launcher: str | None, shards: int) -> None:
    """Shared body of the study commands: validate, then run here (one shard), as local jobs, or on Slurm."""
    from neuronimp.runner.shards import Shard

    cfg = _config(config, overrides)
    if launcher:
        if shard:
            raise UsageError("--shard and --launcher exclude each other: --launcher runs every shard "
                             "(--shards N); --shard i/N runs one")
        from neuronimp.runner.launch import launch
        from neuronimp.runner.preflight import check_config

        check_config(cfg, str(config), device=launcher != "slurm")  # before any job starts: one line, not N
        launch(name, config, overrides or [], launcher, shards, cfg)
        return
    part = Shard.parse(shard)
    from neuronimp.runner.context import build_context
    from neuronimp.runner.driver import run_study

    run_study(name, build_context(cfg), part)


@app.command()
@usage_errors
def validate(configs: Annotated[list[Path], typer.Argument(help="config files")],
             set_: SetOpt = None) -> None:
    """Check configs (keys, types, names, layers, target, device, paths) without running anything."""
    from neuronimp.runner.preflight import check_config

    for c in configs:
        cfg = _config(c, set_)
        check_config(cfg, str(c))
        typer.echo(f"ok: {c} (model {cfg.model.name}, data {cfg.data.name}, methods {', '.join(cfg.methods)})")


@app.command()
@usage_errors
def models() -> None:
    """List the registered models."""
    from neuronimp.models import MODELS

    for name in MODELS.names():
        typer.echo(f"{name:24s} {MODELS.describe(name)}")
    typer.echo(f"{'timm/<name>':24s} any timm model by name, e.g. timm/resnet50")
    typer.echo(f"{'package.module:function':24s} your own model (returns an nn.Module or a ModelBundle)")


@app.command()
@usage_errors
def layers(model: Annotated[str, typer.Argument(help="model name")],
           option: Annotated[Optional[list[str]], typer.Option("--option", help="model option KEY=VALUE")] = None
           ) -> None:
    """Print every addressable layer of MODEL with its output shape, unit axis and unit count.

    A unit is a channel of a conv map (summed over positions), a feature of a [tokens, features] or dense output
    (summed over tokens), or a token (summed over features) when the config's `units:` says so.
    """
    from neuronimp.config import parse_overrides
    from neuronimp.models import create_model, list_layers

    opts = dict(parse_overrides(option, flag="--option", example="width=32"))
    bundle = create_model(model, weights="none", **opts)
    typer.echo(f"{'layer':28s} {'alias':10s} {'shape':22s} {'axis':8s} units")
    for info in list_layers(bundle):
        shape = "x".join(str(s) for s in info.shape)
        if info.problem:
            typer.echo(f"{info.name:28s} {info.alias or '':10s} {'-':22s} {'-':8s} - ({info.problem})")
            continue
        typer.echo(f"{info.name:28s} {info.alias or '':10s} {shape:22s} {info.axis:8s} {info.units}")














@app.command()
@usage_errors
def train(config: ConfigOpt, set_: SetOpt = None) -> None:
    """Train the configured model; writes a checkpoint and a metrics JSON."""
    from neuronimp.commands.train import run
    from neuronimp.runner.context import build_context

    cfg = _config(config, set_)
    run(build_context(cfg, weights="none"))


@app.command()
@usage_errors
def merge(folder: Annotated[Path, typer.Argument(help="results folder holding shard files")],
          name: Annotated[Optional[str], typer.Option(help="table name, e.g. scores; default: every table")] = None,
          count: Annotated[Optional[int], typer.Option(help="only sets of this many shards")] = None
          ) -> None:
    """Combine shard files into one table, checking that none is missing or duplicated."""
    from neuronimp.runner.merge import merge_folder

    for path in merge_folder(folder, name, count, say=typer.echo):
        typer.echo(f"merged: {path}")


@app.command()
@usage_errors
def plot(folder: Annotated[Path, typer.Argument(help="results folder (searched recursively)")],
         out: Annotated[Optional[Path], typer.Option(help="where the PNGs go; default: FOLDER/figures")] = None
         ) -> None:
    """Write PNG figures: flip-count histograms, cumulative-deletion curves, selection-accuracy curves."""
    from neuronimp.report import make_figures

    made, notes = make_figures(folder, out)
    for note in notes:
        typer.echo(f"skipped: {note}")
    for path in made:
        typer.echo(f"wrote: {path}")


@app.command()
@usage_errors
def report(folder: Annotated[Path, typer.Argument(help="results folder (searched recursively)")],
           out: Annotated[Optional[Path], typer.Option(help="markdown file; default: FOLDER/report.md")] = None,
           figures: Annotated[bool, typer.Option(help="also write the figures (beside the report)")] = True
           ) -> None:
    """Write a markdown report: our tables beside the papers' numbers, and the figures."""
    from neuronimp.report import write_report

    path, notes = write_report(folder, out, figures)
    for note in notes:
        typer.echo(f"skipped: {note}")
    typer.echo(f"wrote: {path}")





@app.command()
@usage_errors
def explain(config: ConfigOpt, unit: Annotated[int, typer.Option(help="unit (channel / filter) index")],
            index: Annotated[int, typer.Option(help="input index in the configured split")] = 0,
            set_: SetOpt = None) -> None:
    """Neuron conductance of each input feature through one unit: a heat map (images) or highlighted tokens (text)."""
    from neuronimp.runner.context import build_context

    ctx = build_context(_config(config, set_))
    name = "explain" if ctx.bundle.embed is not None else "explain_image"
    importlib.import_module(f"neuronimp.commands.{name}").run(ctx, unit, index)


def _study_command(name: str, help_text: str) -> None:
    """Add the command of a registered study: `neuronimp NAME --config ...` (with --shard and --launcher)."""

    def command(config: ConfigOpt, set_: SetOpt = None, shard: ShardOpt = None, launcher: LauncherOpt = None,
                shards: ShardsOpt = 2) -> None:
        _study(name, config, set_, shard, launcher, shards)

    command.__doc__ = help_text
    command.__name__ = name
    app.command(name, help=help_text)(usage_errors(command))


@app.command("run")
@usage_errors
def run_(study: Annotated[str, typer.Argument(help="a registered study (built-in or plug-in)")],
         config: ConfigOpt, set_: SetOpt = None, shard: ShardOpt = None, launcher: LauncherOpt = None,
         shards: ShardsOpt = 2) -> None:
    """Run any registered study by name (plug-ins: $NEURONIMP_PLUGINS)."""
    from neuronimp.studies import STUDIES

    _study(STUDIES.canonical(study, where="study"), config, set_, shard, launcher, shards)


def _register_studies() -> None:
    """A command per registered study; a plug-in that cannot be imported is reported by every command."""
    from neuronimp.studies import STUDIES, load_plugins

    global _PLUGIN_ERROR
    try:
        load_plugins()
    except UsageError as exc:
        _PLUGIN_ERROR = str(exc)
    for name in STUDIES.names():
        _study_command(name, STUDIES.describe(name))


_PLUGIN_ERROR: str | None = None
_register_studies()


from neuronimp.cli_data import data_app  # noqa: E402  (`neuronimp data fetch|list`)

app.add_typer(data_app, name="data")


def _one_line_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                      line: str | None = None) -> str:
    """Warnings as one line, `warning: <message>` (not Python's two lines with the source line)."""
    return f"warning: {message}\n"


def main(argv: list[str] | None = None) -> None:
    """Entry point (console script): every usage error, Click's included, is one line and exit code 2."""
    warnings.formatwarning = _one_line_warning
    app(args=argv, prog_name="neuronimp")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
