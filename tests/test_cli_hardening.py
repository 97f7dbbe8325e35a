"""Every command ends in a message with its documented exit code, never a traceback.

Exit codes (icon_dsl.usage.EXIT_CODES): 0 ok, 1 a spec or data error, 2 bad usage, 3 training
started and failed. Each case below is one a user can hit: arguments out of range, output
folders that cannot be written, spec and data files of any name or content, a loss or gradient
that stops being finite. Runs are tiny (40 rows of digits, 1 epoch).
"""

from __future__ import annotations

import errno
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_run import run_cli

import icon_dsl
from icon_dsl.api import CompiledModule
from icon_dsl.explain import explain
from icon_dsl.train import loop
from icon_dsl.train.data import load_digits
from icon_dsl.train.errors import DataError, TrainError, TrainingFailed, UsageError
from icon_dsl.train.runtime import train
from icon_dsl.usage import EXIT_CODES

SPECS = Path(__file__).resolve().parent.parent / "specs"
TSNE = SPECS / "tsne.icon"
N = 40
INTEGER_SPEC = """\
method knn_embed
param k = 5
mapper = table(dim=2)
p = knn(x, k=k)
q = student_t(f(x), dof=1)
loss = kl(p, q)
"""


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """40 labelled rows of digits as a .npz."""
    digits = load_digits()
    assert digits.y is not None
    path = tmp_path_factory.mktemp("data") / "small.npz"
    np.savez(path, x=digits.x[:N], y=digits.y[:N])
    return path


def fast(data: Path, *extra: str | Path) -> list[str | Path]:
    """A one-epoch t-SNE run's arguments on ``data``."""
    return ["train", TSNE, "--data", data, "--epochs", "1", "--quiet", *extra]


def test_exit_codes_are_documented() -> None:
    assert sorted(EXIT_CODES) == [0, 1, 2, 3, 130]
    readme = (SPECS.parent / "README.md").read_text(encoding="utf-8")
    errors = (SPECS.parent / "docs" / "errors.md").read_text(encoding="utf-8")
    for code in (0, 1, 2, 3):
        assert f"| {code} |" in errors and f"| {code} |" in readme, code
    assert "| 3 | training started and failed" in readme


# -- output folders -----------------------------------------------------------------------------


def test_output_folder_under_a_file_or_on_a_file_is_refused_before_training(
    small: Path, tmp_path: Path
) -> None:
    blocker = tmp_path / "afile"
    blocker.write_text("not a folder")
    ran = run_cli(*fast(small, "--out", blocker / "sub"), expect=2)
    assert f"{blocker} is a file, so no folder can be made under it" in ran.err
    ran = run_cli(*fast(small, "--out", blocker), expect=2)
    assert f"output folder {blocker} is a file" in ran.err
    assert "epoch" not in ran.err  # refused before the first epoch
    with pytest.raises(UsageError, match="is a file"):
        train(TSNE, data=str(small), epochs=1, out=blocker, progress=False)


def test_a_folder_where_the_run_writes_a_file_is_refused(small: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    (out / "checkpoint.pt").mkdir(parents=True)
    ran = run_cli(*fast(small, "--out", out), expect=2)
    assert "checkpoint.pt is a folder there, where the run writes a file" in ran.err
    ran = run_cli(*fast(small, "--out", out, "--resume"), expect=2)
    assert "checkpoint.pt is a folder there" in ran.err


def test_files_that_would_be_overwritten_get_a_note(small: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    first = run_cli(*fast(small, "--out", out), expect=0)
    assert "note:" not in first.err
    second = run_cli(*fast(small, "--out", out), expect=0)
    assert f"note: {out} already holds metrics.json, run.json" in second.err
    assert "this run overwrites them (--resume continues the run" in second.err
    resumed = run_cli(*fast(small, "--out", out, "--resume"), expect=0)
    assert "note:" not in resumed.err  # resuming is meant to rewrite them


# -- arguments out of range ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        (
            "--seed",
            str(2**64),
            "argument --seed: must be at least 0 and at most 9223372036854775807",
        ),
        ("--seed", "-1", "argument --seed: must be at least 0"),
        ("--seed", "2**64", "argument --seed: '2**64' is not an integer"),
        ("--epochs", "0", "argument --epochs: must be at least 1, got 0"),
        ("--batch-size", "1", "argument --batch-size: must be at least 2, got 1"),
        ("--restarts", "0", "argument --restarts: must be at least 1, got 0"),
        ("--nproc", "0", "argument --nproc: must be at least 1, got 0"),
        ("--device", "meta", "device 'meta': training runs on cpu, cuda, cuda:N or mps"),
        ("--device", "gpu7", "unknown device 'gpu7'"),
        ("--param", "sigma", "--param expects NAME=VALUE, got 'sigma'"),
        ("--param", "k=inf", "--param k: 'inf' is not a finite number"),
        ("--param", "k=nan", "--param k: 'nan' is not a finite number"),
    ],
)
def test_arguments_out_of_range_are_usage_errors(
    small: Path, tmp_path: Path, flag: str, value: str, message: str
) -> None:
    ran = run_cli(*fast(small, "--out", tmp_path / "run", flag, value), expect=2)
    assert message in ran.err
    assert not (tmp_path / "run").exists()


def test_python_train_checks_the_same_arguments(small: Path) -> None:
    options: dict[str, object] = {"data": str(small), "epochs": 1, "out": False, "progress": False}
    with pytest.raises(UsageError, match=r"seed must be an integer from 0 to 2\^63 - 1"):
        train(TSNE, seed=2**64, **options)  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="not on 'meta'"):
        train(TSNE, device="meta", **options)  # type: ignore[arg-type]
    with pytest.raises(TrainError, match="hyperparameter k must be a finite number, got inf"):
        train(INTEGER_SPEC, hyperparameters={"k": math.inf}, **options)  # type: ignore[arg-type]


def test_explain_batch_must_be_positive() -> None:
    for batch in ("0", "-1"):
        ran = run_cli("explain", TSNE, "--batch", batch, expect=2)
        assert f"argument --batch: must be at least 1, got {batch}" in ran.err
        assert "GiB" not in ran.out
    ran = run_cli("explain", TSNE, "--batch", "1000", expect=0)
    # 15 matrices of 1000 x 1000 float32 (a perplexity p's search): 0.056 GiB
    assert "dense: 0.06 GiB" in ran.out
    with pytest.raises(ValueError, match="batch must be a positive integer, got 0"):
        explain(TSNE, batch=0)


# -- spec files of any name ---------------------------------------------------------------------


def test_train_reads_a_spec_file_of_any_name_as_check_does(small: Path, tmp_path: Path) -> None:
    text = TSNE.read_text(encoding="utf-8")
    for name in ("spec.txt", "X.ICON"):
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        run_cli("check", path, expect=0)
        out = tmp_path / name.replace(".", "_")
        run_cli("train", path, "--data", small, "--epochs", "1", "--out", out, "--quiet", expect=0)
        assert (out / "metrics.json").is_file()
    ran = run_cli("train", tmp_path, "--data", small, "--quiet", expect=1)
    assert f"spec file {tmp_path} is a directory, not a spec file" in ran.err
    # Python's train() reads a string naming an existing file from the file, too
    result = train(str(tmp_path / "spec.txt"), data=str(small), epochs=1, out=False, progress=False)
    assert result.model is not None and result.model.plan.class_name == "TSNE"


# -- data validated up front --------------------------------------------------------------------


def _write_zip(path: Path) -> None:
    with path.open("wb") as handle:  # a file object: numpy keeps the name as it is
        np.savez(handle, x=np.zeros((4, 2)))


def _write_npy(path: Path) -> None:
    with path.open("wb") as handle:
        np.save(handle, np.zeros((4, 2)))


@pytest.mark.parametrize(
    ("name", "write", "message"),
    [
        (
            "zip.npy",
            _write_zip,
            "the file's content is a zip archive (a numpy .npz), not a .npy file; rename it",
        ),
        (
            "array.npz",
            _write_npy,
            "the file's content is a numpy .npy array, not a .npz file; rename it to end in .npy",
        ),
        ("table.csv", _write_npy, "the file's content is a numpy .npy array, not a .csv file"),
        ("text.npy", lambda p: p.write_text("1,2\n3,4\n"), "could not read it as a .npy array"),
        ("empty.npz", lambda p: p.write_bytes(b""), "the file is empty"),
    ],
)
def test_data_files_are_checked_by_their_content(
    tmp_path: Path, name: str, write: object, message: str
) -> None:
    path = tmp_path / name
    write(path)  # type: ignore[operator]
    ran = run_cli(*fast(path, "--out", tmp_path / "run"), expect=1)
    assert f"error: {path}: {message}" in ran.err


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        (np.full(N, 1e19), "labels must be integers between -2^53 and 2^53, got 1e+19 at row 0"),
        (
            np.r_[np.zeros(N - 1), 2.0**60].astype(np.float64),
            f"labels must be integers between -2^53 and 2^53, got {2.0**60} at row {N - 1}",
        ),
        (
            np.r_[np.zeros(N - 1, np.uint64), np.uint64(2**63)],
            f"labels must be integers at most {2**63 - 1} (int64), got {2**63} at row {N - 1}",
        ),
    ],
)
def test_labels_that_do_not_fit_an_integer_range_are_refused(
    tmp_path: Path, labels: np.ndarray, message: str
) -> None:
    path = tmp_path / "labels.npz"
    np.savez(path, x=load_digits().x[:N], y=labels)
    ran = run_cli(*fast(path, "--out", tmp_path / "run"), expect=1)
    assert f"{path}['y']: {message}" in ran.err


def test_too_few_rows_for_training_or_for_a_metric(tmp_path: Path) -> None:
    digits = load_digits()
    assert digits.y is not None
    one = tmp_path / "one.npz"
    np.savez(one, x=digits.x[:1], y=digits.y[:1])
    ran = run_cli(*fast(one, "--out", tmp_path / "one"), expect=1)
    assert f"{one}: 1 row; training compares samples in pairs, so it needs at least 2" in ran.err
    # a spec whose p fits 2 rows: the metrics the rows cannot support are skipped with a note
    spec = tmp_path / "tiny.icon"
    spec.write_text(TSNE.read_text().replace("perplexity=30", "sigma=1"), encoding="utf-8")
    two = tmp_path / "two.npz"
    np.savez(two, x=digits.x[:2], y=digits.y[:2])
    ran = run_cli("train", spec, "--data", two, "--epochs", "1", "--out", tmp_path / "two")
    assert ran.code == 0, ran.err
    assert f"note: {two}: trustworthiness is skipped: it needs at least 3 rows" in ran.err
    assert f"note: {two}: linear_probe_accuracy is skipped: it needs 2 classes in its" in ran.err
    assert "knn_accuracy" in ran.out and "trustworthiness" not in ran.out
    # one class: no linear probe (it would fail after training)
    same = tmp_path / "same.npz"
    np.savez(same, x=digits.x[:N], y=np.zeros(N, dtype=np.int64))
    ran = run_cli(*fast(same, "--out", tmp_path / "same"), expect=0)
    assert "linear_probe_accuracy is skipped: it needs at least 2 classes in y, found 1" in ran.err


def test_a_csv_without_a_label_column_gets_a_note(small: Path, tmp_path: Path) -> None:
    digits = load_digits()
    assert digits.y is not None
    path = tmp_path / "table.csv"
    header = ",".join([*(f"px{i}" for i in range(64)), "digit"])
    rows = [
        ",".join([*(f"{v:g}" for v in x), str(y)])
        for x, y in zip(digits.x[:N], digits.y[:N], strict=True)
    ]
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    ran = run_cli(*fast(path, "--out", tmp_path / "guess"), expect=0)
    assert (
        f"note: {path}: no column is named 'label' or 'y', so the data has no labels and all 65 "
        "columns are features (px0, px1, px2, px3, px4, px5, px6, px7, ..., px63, digit); if one "
        "of them holds labels, name it with --label-column NAME" in ran.err
    )
    ran = run_cli(*fast(path, "--out", tmp_path / "named", "--label-column", "digit"), expect=0)
    assert "note:" not in ran.err
    result = train(TSNE, data=str(path), label_column="digit", epochs=1, out=False, progress=False)
    assert "knn_accuracy" in result.metrics  # the labels were used as labels


def test_data_errors_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "features.npy"
    np.save(path, load_digits().x[:N])
    ran = run_cli("train", SPECS / "supcon.icon", "--data", path, "--quiet", expect=1)
    assert f"error: {path}: the spec needs labels (its p or q uses y) but the data has" in ran.err


# -- failures inside training -------------------------------------------------------------------


def _with_loss(monkeypatch: pytest.MonkeyPatch, change: object) -> None:
    """Every spec loaded from now on computes ``change(loss, z)`` instead of its loss."""
    load = CompiledModule.load

    def patched(self: CompiledModule) -> type:
        base = load(self)
        forward = base.forward

        def changed(module: torch.nn.Module, z: torch.Tensor, **inputs: object) -> torch.Tensor:
            return change(forward(module, z, **inputs), z)  # type: ignore[operator]

        return type(base.__name__, (base,), {"forward": changed})

    monkeypatch.setattr(CompiledModule, "load", patched)


def test_a_nan_gradient_names_the_parameter(
    small: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # sqrt at 0 has an infinite derivative; times 0 it adds nothing to the loss but nan to the
    # gradient of every embedding row
    _with_loss(monkeypatch, lambda loss, z: loss + 0 * torch.sqrt((z - z).pow(2).sum(1)).sum())
    ran = run_cli(*fast(small, "--out", tmp_path / "run"), expect=3)
    assert "error: tsne: training stopped at epoch 1, step 1 of 1: the loss was finite (" in ran.err
    assert "its gradient with respect to the mapper's parameter 'net.weight' has 80 nan" in ran.err
    assert "first at index [0, 0]" in ran.err and "sqrt(abs(d2 - a) + 1e-12)" in ran.err
    assert "diverged" not in ran.err


def test_an_overflowing_loss_says_so(
    small: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _with_loss(monkeypatch, lambda loss, z: loss * torch.exp(torch.tensor(200.0)))
    with pytest.raises(TrainingFailed) as caught:
        train(TSNE, data=str(small), epochs=1, out=False, progress=False)
    message = str(caught.value)
    assert message.startswith("tsne: training stopped at epoch 1, step 1 of 1: the loss was inf")
    assert "for finite embeddings" in message and "a larger temperature or sigma" in message


def test_a_user_kernel_with_sqrt_trains_or_names_the_gradient(tmp_path: Path) -> None:
    """A Laplace kernel exp(-sqrt(d2)/b): its derivative at d2 = 0 (the diagonal) is infinite
    unless the compiler guards it; either way the run must not blame the optimisation."""
    spec = tmp_path / "laplace.icon"
    spec.write_text(
        "kernel laplace(d2, b) = exp(-sqrt(d2) / b)\n"
        "mapper = table(dim=2)\np = gaussian(x, perplexity=10)\n"
        "q = normalize(laplace(f(x), b=1))\nloss = kl(p, q)\n",
        encoding="utf-8",
    )
    digits = tmp_path / "digits.npz"
    np.savez(digits, x=load_digits().x[:N])
    # the compiled kernel takes its limit at d2 = 0 (slope 0 there): it trains
    ran = run_cli("train", spec, "--data", digits, "--epochs", "2", "--out", tmp_path / "run")
    assert ran.code == 0, ran.err
    # both epochs ran; the loss's exact value at duplicates is tested in test_codegen_numbers
    assert len(json.loads((tmp_path / "run" / "run.json").read_text())["losses"]) == 2


def test_outputs_that_cannot_be_written_during_training_exit_3(
    small: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full_disk(out_dir: Path, state: dict[str, object]) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", str(out_dir / "checkpoint.pt"))

    monkeypatch.setattr(loop, "save_checkpoint", full_disk)
    ran = run_cli(*fast(small, "--out", tmp_path / "run"), expect=3)
    assert "error: cannot write the run's outputs" in ran.err
    assert "checkpoint.pt: No space left on device" in ran.err


def test_memory_exhausted_exits_3(
    small: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_memory(self: object, batch: object) -> float:
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 80.00 GiB")

    monkeypatch.setattr(loop.Run, "step", no_memory)
    ran = run_cli(*fast(small, "--out", tmp_path / "run"), expect=3)
    assert "error: training ran out of memory (CUDA out of memory." in ran.err
    assert "try a smaller --batch-size" in ran.err


def test_python_errors_keep_their_classes(small: Path) -> None:
    """DataError and TrainError stay ValueErrors; the new classes are TrainErrors."""
    assert issubclass(UsageError, TrainError) and issubclass(TrainingFailed, TrainError)
    assert issubclass(DataError, ValueError) and issubclass(TrainError, ValueError)


# -- other commands -----------------------------------------------------------------------------


def test_output_paths_of_other_commands_end_in_a_message(tmp_path: Path) -> None:
    blocker = tmp_path / "afile"
    blocker.write_text("not a folder")
    listing = ("enumerate", "--p", "label", "--q", "student_t", "--mapper", "mlp")
    for args in (
        (*listing, "-o", blocker / "table.txt"),
        (*listing, "--emit", blocker),
        ("compile", TSNE, "-o", blocker),
    ):
        ran = run_cli(*args, expect=2)
        assert str(blocker) in ran.err
    for flag, value in (("--limit", "0"), ("--epochs", "0"), ("--seed", "-1")):
        ran = run_cli(*listing, flag, value, expect=2)
        assert f"argument {flag}: must be at least" in ran.err


def test_a_reader_that_leaves_early_gets_no_traceback(tmp_path: Path) -> None:
    """`icon-dsl check ... | head -1`: the pipe closes while the command still prints; the
    command ends quietly (exit 0, nothing on stderr), as Unix filters do."""
    import subprocess
    import sys

    spec = "p = gaussian(x)\nq = gaussian(f(x))\nmapper = mlp(dim=4)\n"
    paths = []
    for i in range(2000):  # a line each, about 200 kB: more than a pipe buffers
        path = tmp_path / f"s{i}.icon"
        path.write_text(spec, encoding="utf-8")
        paths.append(str(path))
    run = subprocess.Popen(
        [sys.executable, "-m", "icon_dsl.cli", "check", *paths],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert run.stdout is not None and run.stderr is not None
    assert run.stdout.read(100)  # a reader that takes one line and leaves
    run.stdout.close()
    err = run.stderr.read().decode()
    assert run.wait(timeout=120) == 0
    assert err == ""


@pytest.mark.parametrize("block_size", [0, -1, 2.5, float("nan")])
def test_fast_path_block_size_out_of_range_is_refused_at_construction(block_size) -> None:
    """SimCLR(block_size=0) once raised a bare `range()` error at the first forward."""
    cls = icon_dsl.compile(SPECS / "simclr.icon").load()
    with pytest.raises(ValueError, match=r"block_size must satisfy block_size >= 1"):
        cls(block_size=block_size)
    assert cls(block_size=3).block_size == 3 and cls().block_size is None
