"""The compiler's contract, as a property: what `check` accepts, the module runs.

For every spec `check` accepts (the bundled specs, the enumerated periodic table, and specs
hypothesis builds with adversarial names, numbers across float64's range and nested
modifiers), `compile` gives a module that constructs with its defaults and gives a finite loss
and finite gradients on a small valid batch (float32, the module's own mapper); a spec `check`
refuses is refused with located diagnostics. The modules are compiled and run in-process; one
subprocess, where importing icon_dsl fails, imports a sample of them from files and runs them
too. Seeded and bounded: 2,000 hypothesis examples (plus the table and the bundled specs).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import contract_batch as B
import pytest
import torch
import whole_table as W
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

import icon_dsl
from icon_dsl import SpecError
from icon_dsl.ir import IR

ROOT = Path(__file__).resolve().parents[1]
SPECS = sorted((ROOT / "specs").glob("*.icon"))
EXAMPLES = int(os.environ.get("CONTRACT_EXAMPLES", 2000))
SAMPLE: dict[str, dict] = {}  # stem -> source and how to run it, for the subprocess


def _required_value(ir: IR, name: str) -> float:
    """A value inside a required hyperparameter's domain (1 where allowed)."""
    domain = ir.hypers[name].domain
    lo, hi = domain.lo, domain.hi
    candidates = [1.0, 0.5, 2.0, 3.0]
    if math.isfinite(lo) and math.isfinite(hi):
        candidates += [(lo + hi) / 2]
    if math.isfinite(lo):
        candidates += [lo, lo + 1]
    if math.isfinite(hi):
        candidates += [hi, hi - 1]
    for value in candidates:
        if domain.contains(value) and (not ir.hypers[name].integer or value == int(value)):
            return value
    raise AssertionError(f"no value for {name} in {domain}")


def _value(ir: IR, expr: object, kwargs: dict[str, float]) -> float | None:
    """A number argument of the IR at these hyperparameters."""
    if expr is None:
        return None
    import sympy as sp

    value = sp.sympify(expr)
    values = {}
    for sym in value.free_symbols:
        hyper = ir.hypers[str(sym)]
        values[sym] = kwargs.get(str(sym), hyper.default)
    return float(value.subs(values))


def _run_plan(ir: IR, python_names: dict[str, str]) -> tuple[dict[str, float], int, int]:
    """Constructor arguments for required hyperparameters, the batch size, the label count."""
    required = {
        name: _required_value(ir, name) for name, h in ir.hypers.items() if h.default is None
    }
    n, labels = 40, 4
    for node in ir.graph.nodes:
        args = ir.args(node)
        for slot in ("perplexity", "k"):
            value = _value(ir, args.get(slot), required)
            if value is not None:
                n = max(n, 2 * math.ceil(value / 2) + 10)
        if ir.op(node) == "classes":
            labels = min(labels, int(_value(ir, args["n"], required) or 1))
    kwargs = {python_names[name]: value for name, value in required.items()}
    return kwargs, n, labels


def _python_names(ir: IR) -> dict[str, str]:
    from icon_dsl.codegen import names

    return names.identifiers(ir.hypers)


def contract(text: str, keep_as: str | None = None, compiler=icon_dsl.compile) -> str:
    """'refused' (located), or 'ran' (finite loss and gradients); an AssertionError otherwise."""
    try:
        module = compiler(text)
    except SpecError as error:
        errors = [d for d in error.diagnostics if d.severity == "error"]
        assert errors, str(error)
        unlocated = [d for d in errors if d.span is None and d.code != "missing-statement"]
        assert not unlocated, f"unlocated diagnostics for:\n{text}\n{error}"
        return "refused"
    kwargs, n, labels = _run_plan(module.ir, _python_names(module.ir))
    cls = module.load()
    try:
        loss, finite = B.run_once(cls, kwargs, n, labels)
    except Exception as error:  # the contract: check accepted it, so it must run
        raise AssertionError(f"{type(error).__name__}: {error}\nspec:\n{text}") from error
    assert finite, f"loss {loss} or a gradient is not finite for:\n{text}"
    if keep_as is not None:
        SAMPLE[keep_as] = {"source": module.source, "kwargs": kwargs, "n": n, "labels": labels}
    return "ran"


MIXTURE_UNDERFLOW = """kernel k(d2, a) = exp(-abs(d2 - a))
param z
mapper = linear(dim=4)
p = 1.175e-38 * graph(index) + (1 - 1.175e-38) * gaussian(x, perplexity=3)
q = normalize(k(f(x), a=z))
loss = reverse_kl(p, q)
"""


def test_a_mixture_p_under_reverse_kl_is_computed_in_logs():
    """Found by the property test below: a mixture holding a perplexity Gaussian was summed in
    probability space, its smallest entries underflowed to 0 in float32 and reverse_kl was
    infinite. In log space the float32 loss equals the float64 one, and p is the mixture of
    its parts computed separately (the graph's rows and the perplexity Gaussian's)."""
    assert contract(MIXTURE_UNDERFLOW) == "ran"
    module = icon_dsl.compile(MIXTURE_UNDERFLOW)
    cls = module.load()
    inputs, graph, mapper, mapper_input = B.forward_batch(cls, 40, 4)
    z = mapper(mapper_input).detach()
    losses = {}
    for dtype in (torch.float32, torch.float64):
        loss_module = cls(z_=1.0, **{k: v.to(dtype) for k, v in graph.items()})
        cast = {k: v.to(dtype) if v.is_floating_point() else v for k, v in inputs.items()}
        losses[dtype] = float(loss_module.divergence(z.to(dtype), **cast))
        p, _ = loss_module.distributions(z.to(dtype), **cast)
    assert math.isfinite(losses[torch.float32])
    assert losses[torch.float32] == pytest.approx(losses[torch.float64], rel=1e-4)
    gaussian = icon_dsl.compile(
        MIXTURE_UNDERFLOW.replace("1.175e-38 * graph(index) + (1 - 1.175e-38) * ", "")
    ).load()
    gaussian_p, _ = gaussian(z_=1.0).distributions(z.double(), x=inputs["x"].double())
    index = inputs["index"]
    walk = graph["adjacency"].double()[index][:, index].fill_diagonal_(0.0)
    walk = walk / walk.sum(1, keepdim=True)
    assert torch.allclose(p, 1.175e-38 * walk + (1 - 1.175e-38) * gaussian_p, rtol=1e-12, atol=0)


# ----------------------------------------------------------------------------- fixed specs


@pytest.mark.parametrize("path", SPECS, ids=[p.stem for p in SPECS])
def test_bundled_specs_keep_the_contract(path):
    assert contract(path.read_text(encoding="utf-8"), keep_as=f"bundled_{path.stem}") == "ran"


def test_the_whole_table_keeps_the_contract():
    """Every distinct loss of the enumerated table (with debias), each mapper once."""
    outcomes = {"ran": 0, "refused": 0, "open fault": 0}
    for i, (_, spec) in enumerate(W.specs()):
        keep_as = f"table_{i}" if i % 10 == 0 else None
        outcomes[contract(spec, keep_as, compiler=W.compiled)] += 1  # compiled once a session
    assert outcomes["ran"] == len(W.specs()), outcomes


# ----------------------------------------------------------------------------- generated specs

# Names a generated module uses itself, Python's own, and spec-language names.
_HOSTILE_NAMES = [
    "self", "self_", "cache_p", "_x", "h_x", "F", "torch", "math", "nn", "Tensor", "validate",
    "gather", "block_size", "embedding_dim", "adjacency", "n", "dim", "forward", "divergence",
    "last_dropped_rows", "a", "b", "c", "u", "z", "q_d2", "p_mask", "q_logits", "d2", "sigma",
    "temperature", "super", "float", "int", "None", "class", "lambda", "_require", "_terms",
    "x_", "diag", "world", "offset", "keep", "log_q", "INPUTS", "prototypes", "x", "p", "loss",
]  # fmt: skip
_names = st.one_of(
    st.sampled_from(_HOSTILE_NAMES), st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,10}", fullmatch=True)
)


def _float_text(exponent: int, mantissa: float) -> str:
    return f"{mantissa:.3g}e{exponent}"


# A number for a slot: mostly ordinary, sometimes at or beyond float64's edges, sometimes not a
# number at all (0/0, 1/0, 10^400): check refuses what the module cannot hold.
_wild = st.sampled_from(
    ["0/0", "1/0", "10^400", "-1", "0", "1e-320", "1e308*10", "2^0.5", "1e-30", "1e30", "1e15"]
)
_widths = st.one_of(
    st.builds(_float_text, st.integers(-3, 3), st.floats(1, 9.99)),
    st.builds(_float_text, st.integers(-330, 330), st.floats(1, 9.99)),
    _wild,
)
_counts = st.one_of(st.integers(1, 12).map(str), st.sampled_from(["0", "2.5", "10^20", "-3"]))
_units = st.one_of(
    st.sampled_from(["0", "0.5", "1", "0.1", "0.9"]), st.floats(0, 1).map(lambda v: f"{v:.4g}")
)


@st.composite
def _number(draw, kind: str, params: dict[str, str]) -> str:
    """A literal, a declared parameter (`param NAME = literal`) or a required one (a bare
    name, no default)."""
    literal = draw({"width": _widths, "count": _counts, "unit": _units}[kind])
    how = draw(st.sampled_from(["literal", "literal", "param", "required"]))
    if how == "literal":
        return literal
    name = draw(_names)
    if name not in params:
        params[name] = literal if how == "param" else ""
    return name


@st.composite
def _p(draw, params: dict[str, str], depth: int) -> str:
    v = draw(st.sampled_from(["x", "side"]))
    leaves = [
        lambda: f"gaussian({v}, sigma={draw(_number('width', params))})",
        lambda: f"gaussian({v}, temperature={draw(_number('width', params))})",
        lambda: f"gaussian({v}, perplexity={draw(st.integers(2, 30))})",
        lambda: f"student_t({v}, dof={draw(_number('width', params))})",
        lambda: f"knn({v}, {draw(_number('count', params))})",
        lambda: "label(y)",
        lambda: "augmentation(index)",
        lambda: "graph(index)",
        lambda: "uniform()",
        lambda: f"normalize(k({v}, a={draw(_number('width', params))}))",
    ]
    if depth <= 0 or draw(st.booleans()):
        return draw(st.sampled_from(leaves))()
    inner = draw(_p(params, depth - 1))
    wrap = draw(st.sampled_from(["debias", "walk", "union", "mixture", "joint"]))
    if wrap == "debias":
        return f"debias({inner}, {draw(_number('unit', params))})"
    if wrap == "walk":
        return f"walk({inner}, {draw(_number('count', params))})"
    other = draw(_p(params, depth - 1))
    if wrap == "union":
        return f"union({inner}, {other})"
    if wrap == "mixture":
        a = draw(_number("unit", params))
        return f"{a} * {inner} + (1 - {a}) * {other}"
    return f"joint({inner})"


_KERNELS = [
    "exp(-d2 / a)", "exp(-sqrt(d2) / a)", "1 / (1 + d2 / a^2)", "(1 + d2)^(-a)", "d2 * a",
    "exp(-d2^0.3 * a)", "exp(-abs(d2 - a))", "a / (a + d2)", "exp(-d2 * 1e-300 / a)",
]  # fmt: skip


@st.composite
def specs(draw) -> str:
    params: dict[str, str] = {}
    mapper_kind = draw(st.sampled_from(["table", "linear", "mlp"]))
    dim = draw(st.integers(1, 6))
    q_kind = draw(st.sampled_from(["gaussian", "student_t", "prototypes", "cluster", "kernel"]))
    metric = draw(st.sampled_from(["euclidean", "cosine", "dot"]))
    if q_kind == "gaussian":
        width = draw(_number("width", params))
        slot = draw(st.sampled_from(["sigma", "temperature"]))
        q = f"gaussian(f(x), {slot}={width}, metric={metric})"
    elif q_kind == "student_t":
        metric = "cosine" if metric == "cosine" else "euclidean"
        q = f"student_t(f(x), dof={draw(_number('width', params))}, metric={metric})"
    elif q_kind == "prototypes":
        count = draw(_number("count", params))
        q = f"gaussian(f(x), prototypes({count}), metric=dot, temperature={draw(_widths)})"
    elif q_kind == "cluster":
        q = "cluster(f(x))"
    else:
        q = f"normalize(k(f(x), a={draw(_number('width', params))}))"
    if draw(st.booleans()) and q_kind != "cluster":
        q = f"debias({q}, {draw(_number('unit', params))})"
    p = draw(_p(params, draw(st.integers(0, 3))))
    if q_kind == "prototypes" and draw(st.booleans()):
        p = f"classes(y, {draw(_number('count', params))})"
    options = f"dim={dim}"
    if mapper_kind == "mlp":
        options += f", hidden={draw(st.integers(1, 8))}, depth={draw(st.integers(1, 3))}"
    if q_kind == "cluster":
        options += ", softmax=true"
    elif draw(st.booleans()):
        options += ", sphere=true"
    lines = []
    method = draw(st.one_of(st.none(), _names))
    if method is not None:
        lines.append(f"method {method}")
    lines.append(f"kernel k(d2, a) = {draw(st.sampled_from(_KERNELS))}")
    lines += [
        f"param {name} = {value}" if value else f"param {name}" for name, value in params.items()
    ]
    lines += [
        f"mapper = {mapper_kind}({options})",
        f"p = {p}",
        f"q = {q}",
        f"loss = {draw(st.sampled_from(['kl', 'reverse_kl', 'js']))}(p, q)",
    ]
    return "\n".join(lines) + "\n"


OUTCOMES = {"ran": 0, "refused": 0, "open fault": 0}


@seed(20251130)
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    phases=[Phase.explicit, Phase.generate],  # a failure is reported as found: no shrinking
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(specs())
def test_generated_specs_keep_the_contract(text):
    count = sum(OUTCOMES.values())
    keep_as = f"generated_{count}" if count % 10 == 0 and len(SAMPLE) < 400 else None
    OUTCOMES[contract(text, keep_as)] += 1


def test_generated_specs_were_mostly_accepted():
    """The strategy is not just noise: a good share of its specs pass check and run."""
    total = sum(OUTCOMES.values())
    if total == 0:
        pytest.skip("run with test_generated_specs_keep_the_contract")
    assert total >= EXAMPLES and OUTCOMES["ran"] >= total // 5, OUTCOMES


# ----------------------------------------------------------------------------- standalone

_STANDALONE = r"""
import importlib.abc, importlib.util, json, sys

class _NoIconDsl(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "icon_dsl" or name.startswith("icon_dsl."):
            raise ImportError("icon_dsl must not be imported by a generated module")
        return None

sys.meta_path.insert(0, _NoIconDsl())
sys.path.insert(0, sys.argv[1])
import contract_batch as B
import torch

manifest = json.load(open(sys.argv[2]))
results = {}
for stem, plan in manifest.items():
    try:
        spec = importlib.util.spec_from_file_location("standalone_" + stem, plan["path"])
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        cls = getattr(mod, plan["class_name"])
        loss, finite = B.run_once(cls, plan["kwargs"], plan["n"], plan["labels"])
        results[stem] = {"loss": loss, "finite": finite}
    except Exception as err:
        results[stem] = {"error": type(err).__name__ + ": " + str(err)}
leaked = sorted(m for m in sys.modules if m == "icon_dsl" or m.startswith("icon_dsl."))
print(json.dumps({"results": results, "icon_dsl_modules": leaked}))
"""


def test_sample_runs_where_icon_dsl_cannot_be_imported(tmp_path):
    """The bundled specs and a sample of the table's and the generated specs' modules, written
    to files and run by one `python -I` process in which importing icon_dsl fails: the same
    losses as in-process (the same seeds), finite."""
    if len(SAMPLE) <= len(SPECS):
        for path in SPECS:
            contract(path.read_text(encoding="utf-8"), keep_as=f"bundled_{path.stem}")
    manifest = {}
    for stem, plan in SAMPLE.items():
        path = tmp_path / f"{stem}.py"
        path.write_text(plan["source"], encoding="utf-8")
        namespace: dict = {"__name__": f"contract_{stem}"}
        exec(compile(plan["source"], str(path), "exec"), namespace)
        (class_name,) = [
            name
            for name, obj in namespace.items()
            if isinstance(obj, type)
            and issubclass(obj, torch.nn.Module)
            and obj.__module__ == namespace["__name__"]
            and not name.startswith("_")
        ]
        expected, _ = B.run_once(namespace[class_name], plan["kwargs"], plan["n"], plan["labels"])
        manifest[stem] = {
            **{k: plan[k] for k in ("kwargs", "n", "labels")},
            "path": str(path),
            "class_name": class_name,
            "expected": expected,
        }
    batch_dir = tmp_path / "helpers"
    batch_dir.mkdir()
    (batch_dir / "contract_batch.py").write_text(Path(B.__file__).read_text(encoding="utf-8"))
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    run = subprocess.run(
        [sys.executable, "-I", "-c", _STANDALONE, str(batch_dir), str(tmp_path / "manifest.json")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    out = json.loads(run.stdout)
    assert out["icon_dsl_modules"] == []
    problems = {}
    for stem, res in out["results"].items():
        expected = manifest[stem]["expected"]
        same = "loss" in res and (
            res["loss"] == expected or abs(res["loss"] - expected) <= 1e-5 * max(1, abs(expected))
        )
        if "error" in res or not res.get("finite") or not same:
            problems[stem] = {**res, "expected": expected}
    assert not problems, problems
    assert len(out["results"]) == len(manifest) >= len(SPECS)
