"""The runner's pieces: shards, atomic tables, resumable batches, merging, input and output guards, launchers."""
from __future__ import annotations

import json
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch

from neuronimp.config import build_config
from neuronimp.digest import file_digest
from neuronimp.errors import UsageError
from neuronimp.runner import launch as launch_mod
from neuronimp.runner.guard import check_finite, check_writable
from neuronimp.runner.io import atomic_path, read_table, table_path, write_table
from neuronimp.runner.jobs import ShardJob, done_record, mark_done, table_files
from neuronimp.runner.merge import merge_folder
from neuronimp.runner.driver import config_key, run_key
from neuronimp.runner.parts import MANIFEST, part_path, parts_status, record_path, run_memory, run_parts
from neuronimp.runner.shards import Shard


# ---------------------------------------------------------------- shards
def test_shard_parse_and_tag() -> None:
    assert Shard.parse(None) == Shard(0, 1) and Shard.parse("") == Shard(0, 1)
    s = Shard.parse("2/5")
    assert (s.index, s.count, s.tag, str(s)) == (2, 5, ".shard-0002-of-0005", "2/5")
    assert Shard(0, 1).tag == ""


@pytest.mark.parametrize("text", ["3/3", "-1/2", "1/0", "a/b", "1", "1/2/3"])
def test_shard_parse_rejects(text: str) -> None:
    with pytest.raises(UsageError, match="--shard"):
        Shard.parse(text)


@pytest.mark.parametrize("n", [1, 2, 3, 7, 13])
def test_shards_partition_the_items(n: int) -> None:
    items = list(range(10))
    parts = [Shard(i, n).select(items) for i in range(n)]
    assert sorted(x for p in parts for x in p) == items  # every item once: none lost, none duplicated
    assert parts[0][:2] == [0, n] if n < 10 else parts[0] == [0]


# ---------------------------------------------------------------- atomic tables
def test_table_path_keeps_the_shard_tag() -> None:
    # regression: Path.with_suffix took '.shard-0000-of-0003' for a suffix, so all shards wrote scores.csv
    assert table_path(Path("o/scores.shard-0000-of-0003")).name == "scores.shard-0000-of-0003.csv"
    assert table_path(Path("o/scores.shard-0000-of-0003"), "parquet").name == "scores.shard-0000-of-0003.parquet"
    assert table_path(Path("o/scores.csv"), "parquet").name == "scores.parquet"
    assert table_path(Path("o/scores")).name == "scores.csv"


def test_empty_table_reads_back_as_zero_rows(tmp_path: Path) -> None:
    p = write_table(pd.DataFrame([]), tmp_path / "empty")
    assert p.read_bytes() == b""
    assert len(read_table(p)) == 0
    p2 = write_table(pd.DataFrame(columns=["a", "b"]), tmp_path / "header")
    assert p2.read_text() == "a,b\n" and len(read_table(p2)) == 0


def test_floats_round_trip_through_csv(tmp_path: Path) -> None:
    x = torch.randn(1000, dtype=torch.float32).double().numpy()
    p = write_table(pd.DataFrame({"v": x}), tmp_path / "f")
    back = read_table(p)["v"].to_numpy()
    assert (back.astype("float32") == x.astype("float32")).all()  # %.9g round-trips float32 values
    assert write_table(read_table(p), tmp_path / "g").read_bytes() == p.read_bytes()


def test_atomic_path_keeps_the_old_file_when_the_writer_fails(tmp_path: Path) -> None:
    target = tmp_path / "t.csv"
    target.write_text("old\n")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half a ro")
            raise RuntimeError("killed")
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["t.csv"]  # no temporary file left


def test_atomic_path_turns_os_errors_into_usage_errors(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(UsageError, match="cannot write"):
        write_table(pd.DataFrame({"a": [1]}), tmp_path / "file" / "sub" / "t")


# ---------------------------------------------------------------- resumable batches
TABLES = ("sq", "cube")


def _rows(chunk: list[int]) -> dict[str, list[dict[str, Any]]]:
    """Two tables per batch: one row per item in `sq`, one row per odd item in `cube`."""
    return {"sq": [{"item": i, "sq": i * i, "half": i / 2} for i in chunk],
            "cube": [{"item": i, "cube": i ** 3} for i in chunk if i % 2]}


def test_run_parts_resumes_without_redoing_finished_batches(tmp_path: Path) -> None:
    items, calls = list(range(10)), []

    def flaky(chunk: list[int]) -> dict[str, list[dict[str, Any]]]:
        calls.append(chunk)
        if chunk[0] == 6:
            raise KeyboardInterrupt  # the run dies in batch 2 (items 6..8)
        return _rows(chunk)

    with pytest.raises(KeyboardInterrupt):
        run_parts(items, flaky, tmp_path / "p", 3, {"a": 1}, TABLES, show=False)
    st = parts_status(tmp_path / "p")
    assert (st.batches_done, st.batches, st.items_done, st.items) == (2, 4, 6, 10)
    assert not record_path(tmp_path / "p", 2).exists() and not part_path(tmp_path / "p", 2, "sq").exists()

    def rest(chunk: list[int]) -> dict[str, list[dict[str, Any]]]:
        assert chunk[0] >= 6, "a finished batch was computed again"
        return _rows(chunk)

    df = run_parts(items, rest, tmp_path / "p", 3, {"a": 1}, TABLES, show=False)
    assert list(df) == list(TABLES)
    assert df["sq"]["item"].tolist() == items and df["sq"]["sq"].tolist() == [i * i for i in items]
    assert df["cube"]["item"].tolist() == [1, 3, 5, 7, 9] and df["cube"]["cube"].tolist() == [1, 27, 125, 343, 729]
    fresh = run_parts(items, _rows, tmp_path / "q", 3, {"a": 1}, TABLES, show=False)
    for t in TABLES:
        pd.testing.assert_frame_equal(df[t], fresh[t])
        # the Python API's in-memory run gives the same frames as the part files read back
        pd.testing.assert_frame_equal(run_memory(items, _rows, 3, TABLES)[t], fresh[t])


def test_a_batch_is_done_only_when_its_record_is_written(tmp_path: Path) -> None:
    # kill -9 after the part files of batch 1 but before its record: the batch is redone, not half-read
    items = list(range(4))
    run_parts(items, _rows, tmp_path / "p", 2, 0, TABLES, show=False)
    record_path(tmp_path / "p", 1).unlink()
    part_path(tmp_path / "p", 1, "sq").write_text("item,sq,ha")  # a stale part of the unfinished batch
    assert parts_status(tmp_path / "p").batches_done == 1
    redone: list[list[int]] = []

    def work(chunk: list[int]) -> dict[str, list[dict[str, Any]]]:
        redone.append(chunk)
        return _rows(chunk)

    df = run_parts(items, work, tmp_path / "p", 2, 0, TABLES, show=False)
    assert redone == [[2, 3]] and df["sq"]["item"].tolist() == items and df["cube"]["item"].tolist() == [1, 3]
    record = json.loads(record_path(tmp_path / "p", 1).read_text())
    assert record["tables"]["sq"]["rows"] == 2 and record["tables"]["cube"]["rows"] == 1
    assert record["tables"]["sq"]["sha256"] == file_digest(part_path(tmp_path / "p", 1, "sq"))


def test_run_parts_refuses_truncated_altered_or_missing_parts(tmp_path: Path) -> None:
    items = list(range(4))
    run_parts(items, _rows, tmp_path / "p", 2, 0, TABLES, show=False)
    part = part_path(tmp_path / "p", 1, "sq")
    good = part.read_bytes()
    never = lambda chunk: pytest.fail("a verified batch was computed again")  # noqa: E731
    part.write_bytes(good[:-3])  # truncated
    with pytest.raises(UsageError, match="batch-000001.sq.csv was truncated or altered"):
        run_parts(items, never, tmp_path / "p", 2, 0, TABLES, show=False)
    part.write_bytes(good.replace(b"9", b"8"))  # same size, other bytes
    with pytest.raises(UsageError, match="truncated or altered"):
        run_parts(items, never, tmp_path / "p", 2, 0, TABLES, show=False)
    part.unlink()
    with pytest.raises(UsageError, match="batch-000001.sq.csv is missing"):
        run_parts(items, never, tmp_path / "p", 2, 0, TABLES, show=False)
    part.write_bytes(good)
    df = run_parts(items, never, tmp_path / "p", 2, 0, TABLES, show=False)
    assert df["sq"]["item"].tolist() == items


def test_empty_batch_reads_back_as_zero_rows(tmp_path: Path) -> None:
    work = lambda chunk: {"sq": []} if chunk[0] == 2 else _rows(chunk)  # noqa: E731
    df = run_parts(list(range(6)), work, tmp_path / "p", 2, 0, TABLES, show=False)
    assert df["sq"]["item"].tolist() == [0, 1, 4, 5] and df["cube"]["item"].tolist() == [1, 5]
    assert part_path(tmp_path / "p", 1, "sq").read_bytes() == b""
    empty = run_parts([1, 2], lambda c: {"sq": []}, tmp_path / "e", 2, 0, TABLES, show=False)
    assert list(empty) == list(TABLES) and empty["sq"].empty and empty["cube"].empty


def test_run_parts_refuses_parts_of_another_run(tmp_path: Path) -> None:
    run_parts(list(range(4)), _rows, tmp_path / "p", 2, {"n_steps": 4}, TABLES, show=False)
    with pytest.raises(UsageError, match="different config"):
        run_parts(list(range(4)), _rows, tmp_path / "p", 2, {"n_steps": 5}, TABLES, show=False)
    with pytest.raises(UsageError, match="different input set"):
        run_parts(list(range(5)), _rows, tmp_path / "p", 2, {"n_steps": 4}, TABLES, show=False)
    with pytest.raises(UsageError, match="batch size"):
        run_parts(list(range(4)), _rows, tmp_path / "p", 1, {"n_steps": 4}, TABLES, show=False)
    (tmp_path / "p" / MANIFEST).unlink()
    with pytest.raises(UsageError, match="no manifest"):
        run_parts(list(range(4)), _rows, tmp_path / "p", 2, {"n_steps": 4}, TABLES, show=False)


def test_run_parts_removes_stale_temporaries_and_leaves_nothing_on_early_failure(tmp_path: Path) -> None:
    def boom(chunk: list[int]) -> dict[str, list[dict[str, Any]]]:
        raise UsageError("bad input")

    with pytest.raises(UsageError):
        run_parts([0, 1], boom, tmp_path / "p", 1, 0, TABLES, show=False)
    assert not (tmp_path / "p").exists()  # no manifest, no parts: nothing half-made
    run_parts([0, 1, 2], _rows, tmp_path / "q", 1, 0, TABLES, show=False)
    record_path(tmp_path / "q", 2).unlink()
    part_path(tmp_path / "q", 2, "sq").unlink()
    stale = tmp_path / "q" / ".batch-000002.sq.csv.abc123.tmp"
    stale.write_text("item,sq,ha")  # what a kill -9 during a write leaves
    df = run_parts([0, 1, 2], _rows, tmp_path / "q", 1, 0, TABLES, show=False)
    assert not stale.exists() and df["sq"]["item"].tolist() == [0, 1, 2]


def test_resume_key_ignores_settings_that_cannot_change_rows() -> None:
    a = build_config({"runner": {"out": "a", "progress": True}})
    b = build_config({"runner": {"out": "b", "progress": False, "slurm": {"partition": "gpu"}}})
    c = build_config({"runner": {"batch_size": 7}})
    ja, jb, jc = (x.model_dump(mode="json") for x in (a, b, c))
    assert config_key(ja) == config_key(jb) and config_key(ja) != config_key(jc)
    assert run_key("score", a) == run_key("score", b) and run_key("score", a) != run_key("score", c)
    assert run_key("score", a) != run_key("ablate", a)  # the study is part of the key
    # a study's key holds its own section, not the other studies' (nor a plug-in's added to every config)
    k = build_config({"ablate": {"max_k": 3}})
    assert run_key("score", k) == run_key("score", a) and run_key("ablate", k) != run_key("ablate", a)
    # a study's setting that cannot change rows (delete.figures) is left out of its part files' key only
    f0, f1 = build_config({"delete": {"figures": False}}), build_config({"delete": {"figures": True}})
    assert run_key("delete", f0, ("delete.figures",)) == run_key("delete", f1, ("delete.figures",))
    assert run_key("delete", f0) != run_key("delete", f1)  # done markers: the figures are outputs too
    assert run_key("delete", f0, ("delete.figures",)) != run_key("delete", build_config({"delete": {"seeds": [1]}}),
                                                                 ("delete.figures",))


# ---------------------------------------------------------------- merge
def _shard_table(folder: Path, name: str, i: int, n: int, ids: list[int], cfg: dict | None = None) -> None:
    s = Shard(i, n)
    df = pd.DataFrame({"input_id": ids, "unit": [0] * len(ids), "score": [0.5 * k for k in ids]})
    path = write_table(df, folder / f"{name}{s.tag}")
    meta = {"config": cfg or {"seed": 0, "runner": {"out": str(folder)}}, "shard": str(s), "command": "score"}
    path.with_suffix(".meta.json").write_text(json.dumps(meta))


def test_merge_combines_shards_in_input_order(tmp_path: Path) -> None:
    ids = list(range(7))
    for i in range(3):
        _shard_table(tmp_path, "scores", i, 3, Shard(i, 3).select(ids))
    _shard_table(tmp_path, "ablate_summary", 0, 3, [0])  # per-shard summaries are not stacked
    [path] = merge_folder(tmp_path)
    df = read_table(path)
    assert path.name == "scores.csv" and df["input_id"].tolist() == ids and df["score"].tolist() == [0.5 * k for k in ids]
    meta = json.loads(path.with_suffix(".meta.json").read_text())
    assert meta["shard"] == "merged" and meta["rows"] == 7 and len(meta["merged_from"]) == 3


def test_merge_rebuilds_aggregates_instead_of_stacking_them(tmp_path: Path) -> None:
    from neuronimp.studies.delete_summary import AUC_GROUP, by_corruption

    rng = np.random.default_rng(0)
    auc = pd.DataFrame({"model": "m", "layer": "fc", "order": "random", "ablation": "zero", "split": "test",
                        "corruption": [0.0, 0.0, 0.5, 0.5, 1.0, 1.0], "seed": [0, 1] * 3,
                        "auc": rng.random(6), "train_acc": 1.0, "test_acc": rng.random(6), "gap": rng.random(6),
                        "reached_fit_target": True})
    meta = {"config": {"seed": 0, "runner": {"out": str(tmp_path)}}, "command": "delete"}
    for i, rows in enumerate((auc.iloc[:3], auc.iloc[3:])):
        s = Shard(i, 2)
        for name, df in (("delete_auc", rows), ("delete_auc_by_corruption", by_corruption(rows, AUC_GROUP)),
                         ("filter_signs", pd.DataFrame({"unit": [0, 1], "n_pos": [i, i]}))):
            write_table(df, tmp_path / f"{name}{s.tag}").with_suffix(".meta.json").write_text(
                json.dumps({**meta, "shard": str(s)}))
    said: list[str] = []
    paths = merge_folder(tmp_path, say=said.append)
    assert [p.name for p in paths] == ["delete_auc.csv", "delete_auc_by_corruption.csv"]
    got = read_table(tmp_path / "delete_auc_by_corruption.csv")
    want = by_corruption(auc, AUC_GROUP)
    assert len(got) == 3 and got["seeds"].tolist() == [2, 2, 2]  # stacking would give 4 rows, 1-2 seeds each
    np.testing.assert_allclose(got["auc_mean"], want["auc_mean"])
    np.testing.assert_allclose(got["auc_sd"], want["auc_sd"])
    assert not (tmp_path / "filter_signs.csv").exists()
    assert len(said) == 1 and said[0].startswith("not merged: filter_signs") and "without --shard" in said[0]


def test_merge_reports_missing_and_unfinished_shards(tmp_path: Path) -> None:
    _shard_table(tmp_path, "scores", 0, 3, [0, 3])
    parts = tmp_path / "parts" / f"score{Shard(1, 3).tag}"
    run_parts([1, 4, 7], _rows, parts, 2, 0, TABLES, show=False)
    record_path(parts, 1).unlink()
    with pytest.raises(UsageError, match=r"missing shard\(s\) 1/3 \(unfinished: 1 of 2 batches done\), 2/3"):
        merge_folder(tmp_path)
    assert not (tmp_path / "scores.csv").exists()


def test_merge_refuses_duplicates_and_mixed_runs(tmp_path: Path) -> None:
    _shard_table(tmp_path, "scores", 0, 2, [0, 2])
    _shard_table(tmp_path, "scores", 1, 2, [1, 2])
    with pytest.raises(UsageError, match="input_id 2 is in shard 0/2 and shard 1/2"):
        merge_folder(tmp_path)
    _shard_table(tmp_path, "scores", 1, 2, [1, 3], cfg={"seed": 1, "runner": {}})
    with pytest.raises(UsageError, match=r"different config.*\(seed differs\)"):
        merge_folder(tmp_path)
    _shard_table(tmp_path, "scores", 0, 3, [0])
    with pytest.raises(UsageError, match="different counts"):
        merge_folder(tmp_path)
    with pytest.raises(UsageError, match="did you mean 'scores'"):
        merge_folder(tmp_path, name="score", count=2)
    (tmp_path / "scores.shard-0000-of-0003.csv").rename(tmp_path / "scores.shard-0001-of-0003.csv")
    (tmp_path / "scores.shard-0000-of-0003.meta.json").rename(tmp_path / "scores.shard-0001-of-0003.meta.json")
    with pytest.raises(UsageError, match="renamed"):
        _shard_table(tmp_path, "scores", 0, 3, [0])
        _shard_table(tmp_path, "scores", 2, 3, [2])
        merge_folder(tmp_path, count=3)
    assert not (tmp_path / "scores.csv").exists()
    with pytest.raises(UsageError, match="no shard tables"):
        merge_folder(tmp_path, count=5)


# ---------------------------------------------------------------- guards
def test_check_finite_names_the_bad_inputs() -> None:
    x = torch.zeros(4, 1, 2, 2)
    x[1, 0, 0, 1] = float("nan")
    x[3, 0, 1, 1] = float("inf")
    with pytest.raises(UsageError, match=r"input ids 11, 13 contain NaN or inf"):
        check_finite(torch.tensor([10, 11, 12, 13]), x)
    check_finite(torch.tensor([0, 1]), torch.zeros(2, 3))
    check_finite(torch.tensor([0]), torch.tensor([[5, 7]]))  # token ids are never NaN


def test_check_writable(tmp_path: Path) -> None:
    assert check_writable(tmp_path / "a" / "b").is_dir()
    (tmp_path / "f").write_text("x")
    with pytest.raises(UsageError, match="is a file"):
        check_writable(tmp_path / "f" / "out")


# ---------------------------------------------------------------- launchers
def test_done_markers_record_the_tables_a_shard_wrote(tmp_path: Path) -> None:
    cfg = build_config({"runner": {"out": str(tmp_path)}})
    s = Shard(1, 2)
    _shard_table(tmp_path, "other", 1, 2, [1])  # there before: not this shard's
    before = table_files(tmp_path, s)
    _shard_table(tmp_path, "scores", 1, 2, [1])
    mark_done(tmp_path, "score", s, cfg, before)
    assert done_record(tmp_path, "score", s, cfg)["tables"] == ["scores.shard-0001-of-0002.csv"]
    assert done_record(tmp_path, "score", s, build_config({"seed": 3})) is None  # another config
    (tmp_path / "scores.shard-0001-of-0002.csv").unlink()
    assert done_record(tmp_path, "score", s, cfg) is None  # its table is gone: run it again


class FakeJob:
    """Stands for a submitit job."""

    def __init__(self, fn: Any, k: int) -> None:
        self.fn, self.job_id = fn, f"42_{k}"


class FakeExecutor:
    """Records what the launcher asks of submitit.AutoExecutor."""

    made: list["FakeExecutor"] = []

    def __init__(self, folder: Any, cluster: str | None = None) -> None:
        self.folder, self.cluster, self.params, self.in_batch, self.jobs = folder, cluster, {}, False, []
        FakeExecutor.made.append(self)

    def update_parameters(self, **kw: Any) -> None:
        self.params.update(kw)

    @contextmanager
    def batch(self) -> Any:
        self.in_batch = True
        yield
        self.in_batch = False

    def submit(self, fn: Any) -> FakeJob:
        assert self.in_batch, "shards must be submitted together, as one job array"
        self.jobs.append(FakeJob(fn, len(self.jobs)))
        return self.jobs[-1]


def test_slurm_launcher_submits_one_array_with_the_configured_resources(tmp_path: Path, monkeypatch: Any,
                                                                         capsys: Any) -> None:
    import submitit

    monkeypatch.setattr(submitit, "AutoExecutor", FakeExecutor)
    slurm = {"partition": "gpu", "account": "lab", "gpus_per_node": 2, "cpus_per_task": 8, "timeout_min": 90,
             "mem_gb": 32, "array_parallelism": 3, "setup": ["module load cuda"], "wait": False,
             "additional": {"exclude": "node7"}}
    cfg = build_config({"runner": {"out": str(tmp_path / "out"), "slurm": slurm}})
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text("{}\n")
    assert launch_mod.launch("score", cfg_file, ["seed=1"], "slurm", 4, cfg) == []
    [ex] = FakeExecutor.made
    assert ex.cluster == "slurm" and len(ex.jobs) == 4
    assert {k: ex.params[k] for k in ("slurm_partition", "slurm_account", "gpus_per_node", "cpus_per_task",
                                      "timeout_min", "mem_gb", "slurm_array_parallelism", "slurm_setup",
                                      "slurm_additional_parameters")} == {
        "slurm_partition": "gpu", "slurm_account": "lab", "gpus_per_node": 2, "cpus_per_task": 8,
        "timeout_min": 90, "mem_gb": 32.0, "slurm_array_parallelism": 3, "slurm_setup": ["module load cuda"],
        "slurm_additional_parameters": {"exclude": "node7"}}
    jobs = [j.fn for j in ex.jobs]
    assert all(isinstance(j, ShardJob) for j in jobs)
    assert [j.shard for j in jobs] == [Shard(i, 4) for i in range(4)]
    assert jobs[0].config == str(cfg_file.resolve()) and "seed=1" in jobs[0].overrides
    assert "runner.progress=false" in jobs[0].overrides
    assert "neuronimp merge" in capsys.readouterr().out  # not waiting: says how to merge later


def test_slurm_parameters_make_a_valid_sbatch_file(tmp_path: Path, monkeypatch: Any) -> None:
    import submitit
    from submitit.slurm.slurm import SlurmExecutor

    monkeypatch.setattr(SlurmExecutor, "affinity", classmethod(lambda cls: 2))  # pretend srun exists
    cfg = build_config({"runner": {"slurm": {"partition": "p", "qos": "high", "constraint": "a100",
                                             "timeout_min": 120, "array_parallelism": 5}}})
    ex = submitit.AutoExecutor(folder=tmp_path, cluster="slurm")
    ex.update_parameters(**launch_mod.slurm_parameters(cfg.runner.slurm, "score"))  # raises on unknown names
    sbatch = ex._executor._make_submission_file_text("python -m x", "uid")
    for line in ("--partition=p", "--qos=high", "--constraint=a100", "--time=120", "--gpus-per-node=1",
                 "--cpus-per-task=4", "--mem=16GB", "--job-name=neuronimp-score"):
        assert f"#SBATCH {line}" in sbatch, line


def test_slurm_launcher_without_slurm_is_a_usage_error(tmp_path: Path) -> None:
    cfg = build_config({"runner": {"out": str(tmp_path)}})
    with pytest.raises(UsageError, match="cluster: local"):
        launch_mod.launch("score", tmp_path / "c.yaml", [], "slurm", 2, cfg)


def test_unknown_launcher_suggests_the_closest(tmp_path: Path) -> None:
    cfg = build_config({"runner": {"out": str(tmp_path)}})
    with pytest.raises(UsageError, match="did you mean 'slurm'"):
        launch_mod.launch("score", tmp_path / "c.yaml", [], "slurmm", 2, cfg)
    with pytest.raises(UsageError, match="--shards 0"):
        launch_mod.launch("score", tmp_path / "c.yaml", [], "local", 0, cfg)


def test_local_slots_share_the_cores() -> None:
    cfg = build_config({"runner": {"device": "cpu", "parallel": 2}})
    slots = launch_mod.local_slots(cfg, 5)
    assert len(slots) == 2 and all(int(s["OMP_NUM_THREADS"]) >= 1 for s in slots)
    assert len(launch_mod.local_slots(cfg, 1)) == 1


def test_runner_threads_sets_torch_threads() -> None:
    from neuronimp.runner.context import build_context

    before = torch.get_num_threads()
    try:
        for n in (1, 2):
            build_context(build_config({"model": {"name": "digits_mlp"}, "runner": {"threads": n, "out": "/x"}}),
                          need_data=False)
            assert torch.get_num_threads() == n
    finally:
        torch.set_num_threads(before)
    with pytest.raises(UsageError, match="runner.threads"):
        build_config({"runner": {"threads": 0}})
