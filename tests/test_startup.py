"""The compiler starts without torch: `check`, `compile` and `explain` import neither torch nor
the training stack (benchmarks/startup.py times them), and what replaced torch's own code is
equal to it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import sympy as sp

from icon_dsl import registry as reg
from icon_dsl.codegen.names import NN_MODULE_ATTRIBUTES
from icon_dsl.codegen.printing import TorchCodePrinter

ROOT = Path(__file__).resolve().parents[1]

# Runs the command line as `icon-dsl` would, then prints the names of every imported module.
_LIST_MODULES = """
import json, runpy, sys
sys.argv = ["icon-dsl", *sys.argv[1:]]
try:
    runpy.run_module("icon_dsl.cli", run_name="__main__")
except SystemExit as exit_:
    status = exit_.code
print(json.dumps({"status": status, "modules": sorted(sys.modules)}))
"""

# The training stack and everything heavy the compiler must not pay for.
_FORBIDDEN = ("torch", "numpy", "sklearn", "matplotlib", "tqdm", "lightning")


@pytest.mark.parametrize(
    "command",
    [
        ["check", "specs/tsne.icon", "specs/simclr.icon"],
        ["compile", "specs/tsne.icon", "specs/simclr.icon", "-o", "{tmp}"],
        ["explain", "specs/tsne.icon"],
        ["explain", "specs/simclr.icon", "--batch", "512"],
    ],
)
def test_compiler_commands_do_not_import_torch(command: list[str], tmp_path: Path) -> None:
    argv = [arg.format(tmp=tmp_path) for arg in command]
    run = subprocess.run(
        [sys.executable, "-c", _LIST_MODULES, *argv],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    report = json.loads(run.stdout.strip().splitlines()[-1])
    assert report["status"] == 0, run.stderr
    modules = report["modules"]
    heavy = sorted(m for m in modules if m.split(".")[0] in _FORBIDDEN)
    assert not heavy, f"`icon-dsl {command[0]}` imported {heavy[:5]}"
    training = [m for m in modules if m.startswith("icon_dsl.train.") and m != "icon_dsl.train.cli"]
    assert not training, f"`icon-dsl {command[0]}` imported the training runtime: {training}"
    if command[0] == "compile":
        assert (tmp_path / "simclr.py").read_text() == (ROOT / "generated/simclr.py").read_text()


def test_nn_module_attributes_cover_torch() -> None:
    """The listed nn.Module attributes (so that names.py need not import torch) still cover
    torch's: a hyperparameter attribute never shadows one."""
    import torch

    public = {name for name in dir(torch.nn.Module) if not name.startswith("_")}
    assert public <= NN_MODULE_ATTRIBUTES, sorted(public - NN_MODULE_ATTRIBUTES)
    assert "training" in NN_MODULE_ATTRIBUTES  # set on each instance, not in dir() of the class


def _kernel_formulas() -> list[sp.Expr]:
    d2 = sp.Symbol("d2", nonnegative=True)
    a, b = sp.Symbol("self.a", positive=True), sp.Symbol("b")
    formulas = [
        block.log_weight(d2, {arg.name: a for arg in block.args if arg.kind in ("real", "int")})
        for block in reg.BLOCKS.values()
        if block.log_weight is not None
    ]
    return formulas + [
        sp.exp(-d2) + sp.Abs(b - d2),
        sp.sqrt(d2 + 1) * d2 ** sp.Rational(1, 3),
        1 / (1 + d2) + sp.Rational(1, 3) * d2 - sp.Float(1.25) * d2,
        sp.log(d2) * a**-2 + a**b,
    ]


def test_torch_printer_matches_sympys() -> None:
    """The torch-free printer writes what sympy's TorchPrinter (which imports torch) writes."""
    from sympy.printing.pytorch import TorchPrinter

    for expr in _kernel_formulas():
        assert TorchCodePrinter().doprint(expr) == TorchPrinter().doprint(expr), expr


def test_torch_printer_refuses_what_it_cannot_print() -> None:
    with pytest.raises(ValueError, match="cos"):
        TorchCodePrinter().doprint(sp.cos(sp.Symbol("d2")))


def test_printed_formula_computes_the_formula() -> None:
    """The printed code, run on tensors, equals sympy's own float64 value of the formula."""
    import torch

    d2, a = sp.Symbol("d2", nonnegative=True), sp.Symbol("a", positive=True)
    expr = -(a + 1) / 2 * sp.log(1 + d2 / a) + sp.sqrt(d2 + 1) - sp.exp(-d2) * sp.Abs(d2 - 2)
    code = TorchCodePrinter().doprint(expr)
    values = [0.0, 0.5, 3.0]
    got = eval(code, {"torch": torch, "d2": torch.tensor(values, dtype=torch.float64), "a": 1.5})
    want = [float(expr.subs({d2: v, a: 1.5}).evalf(30)) for v in values]
    assert got.tolist() == pytest.approx(want, rel=1e-12)
