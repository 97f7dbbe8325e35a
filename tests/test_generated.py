"""The generated modules as files: current, deterministic, standalone, lint-clean, safe, checked.

(a) generated/ is current: compiling specs/*.icon gives byte-identical text;
(b) compiling is deterministic (also across hash seeds) with no timestamp or absolute path;
(c) each generated file runs where icon_dsl cannot be imported, with one public nn.Module;
(d) ruff format --check and ruff check pass on generated/;
(e) text from a spec can never become code (titles, comments, names, file names);
(f) bad batches give clear ValueErrors; (g) bad hyperparameters too, in the constructor;
(h) build_mapper builds the spec's mapper.
"""

from __future__ import annotations

import ast
import importlib.util
import inspect
import io
import json
import keyword
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tokenize
from pathlib import Path

import pytest
import torch
from hypothesis import given, note, settings
from hypothesis import strategies as st

import icon_dsl
from icon_dsl import SpecError
from icon_dsl.codegen.names import identifier, spec_text, string_literal

try:
    from tests import whole_table as W
except ImportError:  # run from inside tests/
    import whole_table as W  # type: ignore[no-redef]

ROOT = Path(__file__).resolve().parents[1]
GENERATED = ROOT / "generated"
SPECS = sorted((ROOT / "specs").glob("*.icon"))
STEMS = [p.stem for p in SPECS]
F64 = torch.float64
REGENERATE = "generated/ is stale: run `icon-dsl compile specs/*.icon` from the repository root"


def load_file(path: Path, name: str | None = None) -> type[torch.nn.Module]:
    """The one public nn.Module class of a generated file, imported by file path."""
    spec = importlib.util.spec_from_file_location(name or f"icon_generated_t_{path.stem}", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return _public_module(vars(mod), mod.__name__)


def _public_module(namespace: dict, module_name: str) -> type[torch.nn.Module]:
    classes = [
        obj
        for name, obj in namespace.items()
        if inspect.isclass(obj)
        and issubclass(obj, torch.nn.Module)
        and obj.__module__ == module_name
        and not name.startswith("_")
    ]
    assert len(classes) == 1, f"expected exactly one public nn.Module, got {classes}"
    return classes[0]


def compile_text(text: str) -> icon_dsl.api.CompiledModule:
    return icon_dsl.compile("\n".join(line.strip() for line in text.strip().splitlines()) + "\n")


SIMCLR_BODY = """
    p = augmentation(index)
    q = gaussian(f(x), temperature=0.5, metric=cosine)
    mapper = linear(dim=3)
"""


def views(n: int) -> torch.Tensor:
    return torch.arange(n // 2).repeat(2)


def randn(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=F64)


# ----------------------------------------------------------------------------- (a) current


@pytest.mark.parametrize("stem", STEMS)
def test_generated_file_is_current(stem, monkeypatch):
    monkeypatch.chdir(ROOT)  # the CLI is run from the root: the header names specs/<stem>.icon
    module = icon_dsl.compile(f"specs/{stem}.icon")
    path = GENERATED / f"{stem}.py"
    assert path.is_file(), f"generated/{stem}.py is missing; {REGENERATE}"
    assert module.stem == stem
    assert module.source.encode("utf-8") == path.read_bytes(), f"{path.name}: {REGENERATE}"


def test_every_generated_file_has_a_spec():
    orphans = sorted(p.name for p in GENERATED.glob("*.py") if p.stem not in STEMS)
    assert not orphans, f"generated files without a spec in specs/: {orphans}"


# ----------------------------------------------------------------------------- (b) determinism

_TIMESTAMP = re.compile(r"\b(19|20)\d\d-\d\d-\d\d\b|\b\d\d:\d\d:\d\d\b")
_COMPILE_ALL = (
    "import json, sys, icon_dsl\n"
    "out = {s: icon_dsl.compile(f'specs/{s}.icon').source for s in sys.argv[1:]}\n"
    "sys.stdout.write(json.dumps(out))\n"
)


def test_compiling_twice_gives_the_same_bytes(monkeypatch):
    monkeypatch.chdir(ROOT)
    for stem in STEMS:
        a = icon_dsl.compile(f"specs/{stem}.icon").source
        b = icon_dsl.compile(f"specs/{stem}.icon").source
        assert a == b, stem


def test_compiling_is_independent_of_the_hash_seed(monkeypatch):
    """Set-order leaks show up as different bytes under different PYTHONHASHSEEDs."""
    monkeypatch.chdir(ROOT)
    here = {stem: icon_dsl.compile(f"specs/{stem}.icon").source for stem in STEMS}
    for seed in ("12345",):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        run = subprocess.run(
            [sys.executable, "-c", _COMPILE_ALL, *STEMS],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert run.returncode == 0, run.stderr[-2000:]
        there = json.loads(run.stdout)
        for stem in STEMS:
            assert there[stem] == here[stem], f"{stem}: differs under PYTHONHASHSEED={seed}"


@pytest.mark.parametrize("stem", STEMS)
def test_no_timestamp_and_no_absolute_path(stem, monkeypatch):
    monkeypatch.chdir(ROOT)
    source = icon_dsl.compile(f"specs/{stem}.icon").source
    assert source.startswith(f"# Generated by icon-dsl from specs/{stem}.icon. Do not edit.\n")
    assert not _TIMESTAMP.search(source), _TIMESTAMP.search(source)
    for absolute in {str(ROOT), str(Path.home()), "/work/", "/home/", "/tmp/", "C:\\"}:
        assert absolute not in source, f"{stem}: absolute path {absolute!r} in the source"


def test_absolute_spec_path_does_not_leak_into_the_source(monkeypatch):
    """`icon-dsl compile /abs/specs/simclr.icon` from the root gives the same bytes as
    `icon-dsl compile specs/simclr.icon` (this leaked the absolute path until recently)."""
    monkeypatch.chdir(ROOT)
    relative = icon_dsl.compile("specs/simclr.icon").source
    absolute = icon_dsl.compile(str(ROOT / "specs" / "simclr.icon")).source
    assert str(ROOT) not in absolute
    assert absolute == relative


# ----------------------------------------------------------------------------- (c) standalone

_STANDALONE = r"""
import importlib.abc, importlib.util, inspect, json, sys


class _BlockIconDsl(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "icon_dsl" or name.startswith("icon_dsl."):
            raise ImportError("icon_dsl is blocked in this test: " + name)
        return None


sys.meta_path.insert(0, _BlockIconDsl())
try:
    import icon_dsl  # noqa: F401
    raise SystemExit("the blocker did not work")
except ImportError:
    pass
import torch

N = 40
results = {}
for path in sys.argv[1:]:
    res = results[path] = {}
    try:
        spec = importlib.util.spec_from_file_location("standalone_" + str(len(results)), path)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        public = [
            n for n, o in vars(mod).items()
            if inspect.isclass(o) and issubclass(o, torch.nn.Module)
            and o.__module__ == mod.__name__ and not n.startswith("_")
        ]
        res["public"] = public
        cls = getattr(mod, public[0])
        res["methods"] = [m for m in ("forward", "distributions", "divergence", "build_mapper")
                          if callable(getattr(cls, m, None))]
        res["static_build_mapper"] = isinstance(
            inspect.getattr_static(cls, "build_mapper"), staticmethod)
        g = torch.Generator().manual_seed(0)
        kwargs = {}
        for p in inspect.signature(cls.__init__).parameters.values():
            if p.name == "self" or p.default is not inspect.Parameter.empty:
                continue
            if p.annotation in ("Tensor", torch.Tensor):
                w = torch.rand(60, 60, generator=g, dtype=torch.float64)
                kwargs[p.name] = w + w.T
            else:
                kwargs[p.name] = 0.7
        module = cls(**kwargs).double()
        names = [p.name for p in inspect.signature(cls.forward).parameters.values()
                 if p.kind is inspect.Parameter.KEYWORD_ONLY and p.default is inspect.Parameter.empty]
        inputs = {}
        for name in names:
            if name in ("x", "side"):
                inputs[name] = torch.randn(N, 5, generator=g, dtype=torch.float64)
            elif name == "y":
                inputs[name] = torch.arange(N) % 5
            elif name == "index" and "adjacency" in kwargs:
                inputs[name] = torch.randperm(60, generator=g)[:N]
            elif name == "index":
                inputs[name] = torch.arange(N // 2).repeat(2)
            elif name == "modality":
                inputs[name] = (torch.arange(N) >= N // 2).long()
            else:
                raise ValueError("unknown input " + name)
        mapper = cls.build_mapper(5, num_samples=N).double()
        uses_table = any(isinstance(m, torch.nn.Embedding) for m in mapper.modules())
        z = mapper(torch.arange(N) if uses_table else torch.randn(N, 5, dtype=torch.float64))
        loss = module(z, **inputs)
        loss.backward()
        p, q = module.distributions(z.detach(), **inputs)
        div = module.divergence(z.detach(), **inputs)
        res["loss_finite"] = bool(torch.isfinite(loss)) and loss.dim() == 0
        res["divergence_finite"] = bool(torch.isfinite(div))
        res["grad_finite"] = all(bool(torch.isfinite(t.grad).all())
                                 for t in mapper.parameters() if t.grad is not None)
        res["shapes"] = [list(p.shape), list(q.shape)]
    except Exception as err:  # reported to the parent test
        res["error"] = type(err).__name__ + ": " + str(err)
res_modules = sorted(m for m in sys.modules if m == "icon_dsl" or m.startswith("icon_dsl."))
print(json.dumps({"results": results, "icon_dsl_modules": res_modules}))
"""


def test_generated_files_run_without_icon_dsl(tmp_path):
    """Copies of generated/*.py run in `python -I` (no cwd, no PYTHONPATH) with an import hook
    that makes importing icon_dsl fail; each has exactly one public nn.Module with forward,
    distributions, divergence and a static build_mapper, and trains one step end to end."""
    copies = []
    for stem in STEMS:
        dest = tmp_path / f"{stem}.py"
        dest.write_bytes((GENERATED / f"{stem}.py").read_bytes())
        copies.append(str(dest))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    run = subprocess.run(
        [sys.executable, "-I", "-c", _STANDALONE, *copies],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    out = json.loads(run.stdout)
    assert out["icon_dsl_modules"] == []
    problems = {}
    for path, res in out["results"].items():
        stem = Path(path).stem
        expected = {
            "methods": ["forward", "distributions", "divergence", "build_mapper"],
            "static_build_mapper": True,
            "loss_finite": True,
            "divergence_finite": True,
            "grad_finite": True,
        }
        bad = {k: res.get(k) for k, v in expected.items() if res.get(k) != v}
        if "error" in res or len(res.get("public", [])) != 1 or bad:
            problems[stem] = {"error": res.get("error"), "public": res.get("public"), **bad}
    assert not problems, problems


@pytest.mark.parametrize("stem", STEMS)
def test_generated_imports_only_torch_and_the_standard_library(stem):
    tree = ast.parse((GENERATED / f"{stem}.py").read_text(encoding="utf-8"))
    allowed = set(sys.stdlib_module_names) | {"torch", "__future__"}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            tops = [alias.name.split(".")[0] for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{stem}: relative import"
            tops = [(node.module or "").split(".")[0]]
        else:
            continue
        assert set(tops) <= allowed, f"{stem}: imports {tops}"


# ----------------------------------------------------------------------------- (d) ruff


def _ruff(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ruff", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture(scope="module")
def ruff_available() -> None:
    if importlib.util.find_spec("ruff") is None:
        pytest.skip("ruff is not installed (pip install ruff)")


@pytest.mark.parametrize("command", [("format", "--check"), ("check",)])
def test_ruff_passes_on_generated(ruff_available, command):
    """Run inside generated/ so that generated/ruff.toml (ruff's defaults) applies; no cache is
    written there."""
    run = _ruff(*command, "--no-cache", ".", cwd=GENERATED)
    assert run.returncode == 0, run.stdout + run.stderr


@pytest.mark.parametrize("command", [("format", "--check"), ("check",)])
def test_ruff_passes_on_every_enumerated_module(ruff_available, command, tmp_path):
    """The whole table (627 modules with the debias modifier) is formatted and lint-clean, not
    only the committed specs: every lowering path writes code ruff would write."""
    from icon_dsl.enumeration import enumerate_methods

    (tmp_path / "ruff.toml").write_text((GENERATED / "ruff.toml").read_text())
    for candidate in enumerate_methods(probe=False, modifiers=("debias",)):  # every cell
        source = icon_dsl.compile(candidate.spec).source
        (tmp_path / f"{candidate.name}.py").write_text(source)
    # kernels whose arguments are hyperparameter expressions (named constants in `_q_kernel`)
    for i, q in enumerate(
        ["student_t(f(x), dof=nu, scale=s)", "gaussian(f(x), sigma=2 * s + nu)",
         "gaussian(f(x), temperature=s * nu, diagonal=true)"]
    ):  # fmt: skip
        spec = f"mapper = mlp(dim=2)\nparam nu = 2.5\nparam s = 0.5\np = knn(x, 4)\nq = {q}"
        (tmp_path / f"hyper{i}.py").write_text(icon_dsl.compile(spec).source)
    user = "kernel cauchy(d2, g) = 1 / (1 + d2 / g^2)\nparam s = 0.5\nmapper = table(dim=2)\n"
    user += "p = gaussian(x, sigma=2)\nq = normalize(cauchy(f(x), 2 * s))"
    (tmp_path / "user_kernel.py").write_text(icon_dsl.compile(user).source)
    # 40-character hyperparameter names: `self.name = name` and the kernel's constants wrap
    sigma, dof = (
        "a_very_long_hyperparameter_name_for_sigma",
        "a_long_name_for_degrees_of_freedom_nu",
    )
    long_names = f"param {sigma} = 1\nparam {dof} = 2\nmapper = mlp(dim=8)\n"
    long_names += f"p = gaussian(x, sigma={sigma})\nq = student_t(f(x), dof={dof})"
    (tmp_path / "long_names.py").write_text(icon_dsl.compile(long_names).source)
    run = _ruff(*command, "--no-cache", ".", cwd=tmp_path)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr


# ----------------------------------------------------------------------------- (e) injection

PAYLOAD = "__import__('os').system('touch PWNED')"
TITLES = {
    "triple_quotes": '\\"\\"\\" + ' + PAYLOAD + ' + \\"\\"\\"',
    "escaped_quotes_literal": '\\\\\\"\\\\\\"\\\\\\" ' + PAYLOAD,
    "newline_then_code": '\\n\\"\\"\\"\\nimport os\\nos.system(\'touch PWNED\')\\n\\"\\"\\"',
    "fstring_braces": "{" + PAYLOAD + "}",
    "backslash_at_end": "ends with a backslash \\\\",
    "quote_at_end": 'ends with a quote \\"',
    "two_quotes_at_end": 'ab\\"\\"',
    "four_quotes": '\\"\\"\\"\\"',
    "control_characters": "a\\u0000b\\rc\\td\\u001b[31m",
    "unicode_bmp": "Café ☕ naïve Ω ≤",
}


def _assert_safe_module(module: icon_dsl.api.CompiledModule, tmp_path: Path, monkeypatch) -> type:
    """Write, import and run a generated module in tmp_path; no PWNED file may appear."""
    monkeypatch.chdir(tmp_path)
    tree = ast.parse(module.source)
    # the module body holds only a docstring, imports, definitions and plain assignments
    for i, node in enumerate(tree.body):
        if isinstance(node, ast.Expr):
            assert i == 0 and isinstance(node.value, ast.Constant), ast.dump(node)[:200]
        else:
            assert isinstance(
                node,
                ast.Import | ast.ImportFrom | ast.FunctionDef | ast.ClassDef | ast.Assign,
            ), ast.dump(node)[:200]
    assert module.class_name.isidentifier() and not keyword.iskeyword(module.class_name)
    path = module.write(tmp_path / "out")
    assert path.parent == tmp_path / "out" and path.suffix == ".py"
    cls = load_file(path, f"icon_generated_injection_{abs(hash(module.source))}")
    assert cls.__name__ == module.class_name
    for p in inspect.signature(cls.__init__).parameters:
        assert p.isidentifier() and not keyword.iskeyword(p), p
    assert not (tmp_path / "PWNED").exists() and not (ROOT / "PWNED").exists()
    return cls


def _run_simclr_like(cls: type, **kwargs) -> float:
    z, index = randn(6, 3), views(6)
    module = cls(**kwargs)
    loss = module(z, index=index)
    assert torch.isfinite(loss)
    return float(loss)


@pytest.mark.parametrize("name", list(TITLES))
def test_title_cannot_inject_code(name, tmp_path, monkeypatch):
    text = f'method evil "{TITLES[name]}"\n' + SIMCLR_BODY
    try:
        module = compile_text(text)
    except SpecError:
        return  # refusing the title is acceptable; any other exception is not
    cls = _assert_safe_module(module, tmp_path, monkeypatch)
    assert cls.__name__ == "Evil"
    assert _run_simclr_like(cls) > 0


@pytest.mark.parametrize("name", list(TITLES))
def test_title_round_trips_into_the_docstring(name):
    title = json.loads(f'"{TITLES[name]}"')
    module = compile_text(f'method evil "{TITLES[name]}"\n' + SIMCLR_BODY)
    doc = ast.get_docstring(ast.parse(module.source), clean=False)
    assert f"Title: {title}\n" in doc


def test_title_outside_the_bmp_round_trips():
    module = compile_text('method emoji "smile \U0001f600 end"\n' + SIMCLR_BODY)
    assert "smile \U0001f600 end" in ast.get_docstring(ast.parse(module.source))


# A payload that leaves two traces if it ever runs: a file PWNED in the working directory and a
# flag on builtins. Each piece of text below tries another way out of a comment, a docstring, a
# string literal or a template.
RUN_FLAG = "icon_dsl_injected_code_ran"
RUN_CODE = f"__import__('builtins').__dict__.__setitem__('{RUN_FLAG}', 1) or open('PWNED', 'w')"
BREAKOUTS = [
    f'""" + {RUN_CODE} + """',  # closes a docstring
    f"''' ; {RUN_CODE} ; '''",
    f'"; {RUN_CODE}; "',  # closes a "..." literal
    f'\\"""; {RUN_CODE}  # \\',  # escapes the closing quote, ends on a backslash
    f"\r{RUN_CODE}",  # a carriage return ends a Python line
    f"\x00 {RUN_CODE}",  # NUL: a SyntaxError in Python source
    f"\x0c\x0b\x1c\x85\u2028 {RUN_CODE}",  # other line breaks of str.splitlines
    f"# {RUN_CODE}",
    "{{ 7 * 7 }} {% for i in range(3) %}{{ i }}{% endfor %} {# hidden #} {%raw%}",
    "{{ self.__init__.__globals__ }} {{ cycler.__init__.__globals__.os.system('touch PWNED') }}",
    "Café ☕ \U0001f600 \\N{BULLET} \\x41 \\u0041",
]
#: Payloads for a comment: a comment cannot carry a new line (it would end there).
COMMENT_PAYLOADS = [*BREAKOUTS, "\\", '"""', "'''"]

#: Specs that reach each path of the generated code: the contrastive fast path, the closed-form
#: neighbour path, the dense path (mixture, knn, user kernel, hyperparameter expressions) and
#: prototypes; every token of each is followed by a comment when the test runs.
INJECTION_BASES = {
    "fast": SIMCLR_BODY,
    "neighbour": "p = gaussian(x, perplexity=5)\nq = student_t(f(x), dof=1)\nmapper = table(dim=2)",
    "dense": (
        "param a in [0, 1] = 0.5\nparam s = 2\n"
        "kernel cauchy(d2, g) = 1 / (1 + d2 / g ^ 2)\n"
        "p = a * knn(x, 3) + (1 - a) * gaussian(x, sigma=s)\n"
        "q = normalize(cauchy(f(x), 2 * s))\nmapper = mlp(dim=3, hidden=4, depth=2)\n"
        "loss = kl(p, q)"
    ),
    "prototypes": "p = classes(y, 4)\nq = gaussian(f(x), prototypes(4), sigma=1)\nmapper = linear(dim=3)",
}

_TOKEN = re.compile(r'[A-Za-z_]\w*|\d+\.?\d*(?:[eE][+-]?\d+)?|"(?:[^"\\\n]|\\.)*"|\n|\S')


def _commented_everywhere(text: str, payloads: list[str]) -> str:
    """`text` with a comment wherever the grammar allows one: after every token inside
    brackets (a new line continues the statement there) and at the end of every line; the
    comments cycle through `payloads`."""
    out, depth, i = [f"# {payloads[0]}\n"], 0, 1
    for token in _TOKEN.findall(text.strip() + "\n"):
        if token == "\n":
            out.append(f" # {payloads[i % len(payloads)]}\n")
            i += 1
            continue
        depth += token in ("(", "[")
        depth -= token in (")", "]")
        out.append(" " + token)
        if depth:
            out.append(f" # {payloads[i % len(payloads)]}\n")
            i += 1
    return "".join(out)


def _title(payloads: list[str]) -> str:
    """A method title carrying every payload (a JSON string escapes whatever it must)."""
    return "method evil " + json.dumps(" | ".join(payloads)) + "\n"


def _assert_no_injected_code(source: str) -> None:
    """No name the payload needs appears as code (only inside docstrings and comments)."""
    tree = ast.parse(source)
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            assert node.id not in ("__import__", "open", "exec", "eval", "cycler"), node.id
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            if id(node) not in docstrings:
                assert RUN_FLAG not in node.value and "PWNED" not in node.value, node.value


def _construct_and_run(cls: type, text: str) -> None:
    """Construct with the defaults (1.0 for a hyperparameter without one), then call
    forward, divergence and distributions on a small batch; all must be finite."""
    g = torch.Generator().manual_seed(0)
    inputs, graph = W.batch(cls, 64, g, dtype=torch.float32)
    required = {
        name: 1.0
        for name, param in inspect.signature(cls.__init__).parameters.items()
        if param.kind == param.KEYWORD_ONLY and param.default is param.empty and name not in graph
    }
    module = cls(**graph, **required)
    z = W.embedding(text, module, 64, g).float()
    assert torch.isfinite(module(z, **inputs))
    assert torch.isfinite(module.divergence(z, **inputs))
    for dense in module.distributions(z, **inputs):
        assert torch.isfinite(dense).all()


def _assert_nothing_ran(tmp_path: Path) -> None:
    import builtins

    assert not hasattr(builtins, RUN_FLAG)
    assert not (tmp_path / "PWNED").exists() and not (ROOT / "PWNED").exists()


@pytest.mark.parametrize("payload", [*BREAKOUTS, "\n", "\\", '"'], ids=repr)
def test_spec_text_is_one_inert_line_with_the_same_value(payload):
    """The one escaping path: printable ASCII on one line, one comment token after `#`, and
    inside a docstring or a string literal its value is exactly the text."""
    text = spec_text(payload)
    assert all(32 <= ord(ch) < 127 for ch in text), text
    tokens = list(tokenize.generate_tokens(io.StringIO(f"x = 1  # {text}\n").readline))
    assert [t.type for t in tokens[-3:]] == [tokenize.COMMENT, tokenize.NEWLINE, tokenize.ENDMARKER]
    assert ast.literal_eval(f'"""{text}"""') == payload
    assert ast.literal_eval(f'"""a {text}"""') == f"a {payload}"  # not at the start either
    assert ast.literal_eval(string_literal(payload)) == payload


@pytest.mark.parametrize("base", list(INJECTION_BASES))
def test_comments_and_titles_everywhere_run_nothing(base, tmp_path, monkeypatch):
    """Every comment position and the title carry a breakout: the module imports,
    constructs and computes, nothing runs, and the spec is in its docstring word for word."""
    text = _title(BREAKOUTS) + _commented_everywhere(INJECTION_BASES[base], COMMENT_PAYLOADS)
    module = icon_dsl.compile(text)
    _assert_no_injected_code(module.source)
    cls = _assert_safe_module(module, tmp_path, monkeypatch)
    _construct_and_run(cls, text)
    _assert_nothing_ran(tmp_path)
    doc = ast.get_docstring(ast.parse(module.source), clean=False)
    assert f"Title: {' | '.join(BREAKOUTS)}\n" in doc
    for line in text.rstrip().split("\n"):
        assert line.rstrip() in doc
    assert "49" not in doc  # no template ran


@pytest.mark.parametrize(
    "text",
    [
        'p = "{x}"\n' + SIMCLR_BODY.replace("p = augmentation(index)", ""),
        SIMCLR_BODY.replace("0.5", json.dumps(BREAKOUTS[0])),
        SIMCLR_BODY.replace("cosine", json.dumps(BREAKOUTS[4])),
        SIMCLR_BODY.replace("linear(dim=3)", "linear(dim=3, " + json.dumps(RUN_CODE) + ")"),
        "kernel k(d2) = " + json.dumps(RUN_CODE) + "\n" + SIMCLR_BODY,
        "param t = " + json.dumps(RUN_CODE) + "\n" + SIMCLR_BODY,
        "param t in [" + json.dumps(RUN_CODE) + ", 1]\n" + SIMCLR_BODY,
        "method " + json.dumps(RUN_CODE) + "\n" + SIMCLR_BODY,
    ],
    ids=["statement", "number", "choice", "extra", "kernel", "default", "interval", "name"],
)
def test_strings_outside_the_title_are_refused(text):
    """A string is a value only as a method's title; anywhere else it is a located error."""
    with pytest.raises(SpecError) as err:
        icon_dsl.compile(text)
    assert all(d.span is not None for d in err.value.diagnostics if d.severity == "error")


_BUNDLED = {path.stem: path.read_text(encoding="utf-8") for path in SPECS}


@settings(max_examples=30, deadline=None, derandomize=True, database=None)
@given(
    stem=st.sampled_from(sorted(_BUNDLED)),
    payload=st.sampled_from([*BREAKOUTS, "\n", "\\", '"""\n']),
    how=st.sampled_from(["comment", "raw", "title"]),
    where=st.floats(0, 1),
)
def test_payloads_at_random_positions_of_the_bundled_specs(stem, payload, how, where):
    """A payload as a comment, as raw text or in the title, at a random place of a bundled
    spec: a SpecError, or a module that runs and ran nothing."""
    text = _BUNDLED[stem]
    if how == "title":
        kept = [line for line in text.split("\n") if not line.startswith("method")]
        text = _title([payload]) + "\n".join(kept)
    else:
        at = int(where * len(text))
        comment = "# " + payload.replace("\n", " ") + "\n"
        text = text[:at] + (comment if how == "comment" else payload) + text[at:]
    note(repr(text))
    try:
        module = icon_dsl.compile(text)
    except SpecError as err:
        assert err.codes
        return
    _assert_no_injected_code(module.source)
    path = Path(tempfile.mkdtemp(prefix="icon_inject_"))
    try:
        cls = load_file(module.write(path), f"icon_generated_fuzz_{stem}")
        cwd = os.getcwd()
        os.chdir(path)
        try:
            _construct_and_run(cls, text)
        finally:
            os.chdir(cwd)
        _assert_nothing_ran(path)
    finally:
        shutil.rmtree(path)


@pytest.mark.parametrize(
    "text,kwarg",
    [
        ("method class\n" + SIMCLR_BODY, None),
        ("method None\n" + SIMCLR_BODY, None),
        ("method __import__\n" + SIMCLR_BODY, None),
        (
            "param lambda = 0.5\n" + SIMCLR_BODY.replace("temperature=0.5", "temperature=lambda"),
            "lambda",
        ),
        (
            "param __import__ = 0.5\n"
            + SIMCLR_BODY.replace("temperature=0.5", "temperature=__import__"),
            "__import__",
        ),
        (
            "param def = 0.5\nkernel class(d2, lambda) = 1 / (1 + d2 / lambda^2)\n"
            "p = augmentation(index)\nq = normalize(class(f(x), def))\nmapper = table(dim=2)",
            "def",
        ),
    ],
    ids=["method_class", "method_None", "method_dunder", "param_lambda", "param_dunder", "kernel"],
)
def test_python_keywords_and_dunders_as_names(text, kwarg, tmp_path, monkeypatch):
    try:
        module = compile_text(text)
    except SpecError:
        return
    cls = _assert_safe_module(module, tmp_path, monkeypatch)
    if kwarg is None:
        assert _run_simclr_like(cls) > 0
        return
    params = inspect.signature(cls.__init__).parameters
    name = identifier(kwarg)
    assert name in params and name.isidentifier() and not keyword.iskeyword(name)
    default = _run_simclr_like(cls)
    assert _run_simclr_like(cls, **{name: 0.5}) == default
    assert _run_simclr_like(cls, **{name: 0.2}) != default  # the argument acts


@pytest.mark.parametrize(
    "file_name",
    [
        "evil\n" + PAYLOAD + "\n.icon",
        'e"""vil\\.icon',
        "caf\u00e9 \u2615.icon",
        "1-starts with a digit.icon",
    ],
    ids=["newlines", "quotes_backslash", "unicode", "digit"],
)
def test_file_names_cannot_inject_code(file_name, tmp_path, monkeypatch):
    spec_dir = tmp_path / "specs"
    spec_dir.mkdir()
    spec_path = spec_dir / file_name
    spec_path.write_text(SIMCLR_BODY.strip() + "\n", encoding="utf-8")
    try:
        module = icon_dsl.compile(spec_path)
    except SpecError:
        return
    assert module.stem.isidentifier(), module.stem
    cls = _assert_safe_module(module, tmp_path, monkeypatch)
    assert module.source.splitlines()[0].startswith("# Generated by icon-dsl from ")
    assert _run_simclr_like(cls) > 0


def test_module_stem_is_not_a_keyword(tmp_path):
    spec_path = tmp_path / "class.icon"
    spec_path.write_text(SIMCLR_BODY.strip() + "\n", encoding="utf-8")
    assert not keyword.iskeyword(icon_dsl.compile(spec_path).stem)


# Hyperparameter names that collide with what the generated module itself defines.
_COLLIDING_OK = ["eye", "self", "math", "torch", "F", "embedding_dim", "dim", "INPUTS", "sigma2"]
_COLLIDING_BAD = {
    "validate": "duplicate constructor argument: SyntaxError when the module is loaded",
    "gather": "duplicate argument of _terms/forward",
    "last_dropped_rows": "reset to 0 after the hyperparameter is stored: temperature 0 -> NaN",
    "divergence": "the instance attribute hides the method",
    "distributions": "the instance attribute hides the method",
    "_terms": "the instance attribute hides the method",
    "_mean": "the instance attribute hides the method",
    "_require": "the keyword argument hides the module-level _require in __init__",
    "super": "builtins are not renamed (dir(__builtins__) lists dict methods in a module)",
    "block_size": "duplicate constructor argument: SyntaxError when the module is loaded",
}


def _collision_cases():
    # the second group once broke the module (the reason is kept): names.identifier renames them
    for name in [*_COLLIDING_OK, *_COLLIDING_BAD]:
        yield pytest.param(name, id=name)


@pytest.mark.parametrize("name", list(_collision_cases()))
def test_hyperparameter_names_do_not_collide(name):
    text = f"param {name} = 0.5\n" + SIMCLR_BODY.replace("temperature=0.5", f"temperature={name}")
    try:
        module = compile_text(text)
    except SpecError:
        return  # refusing the name is fine
    cls = module.load()
    kw = identifier(name)
    assert kw in inspect.signature(cls.__init__).parameters
    z, index = randn(6, 3), views(6)
    for tau in (0.5, 0.2):
        m = cls(**{kw: tau})
        expected = _nt_xent(z, index, tau)
        assert abs(float(m(z, index=index)) - expected) <= 1e-10
        assert m.divergence(z, index=index).isfinite()
        p, q = m.distributions(z, index=index)
        assert p.shape == q.shape == (6, 6)
        assert isinstance(m.build_mapper(4), torch.nn.Module)


def _nt_xent(z: torch.Tensor, index: torch.Tensor, tau: float) -> float:
    zn = torch.nn.functional.normalize(z, dim=1)
    s = (zn @ zn.T / tau).masked_fill(torch.eye(len(z), dtype=torch.bool), -math.inf)
    same = (index[:, None] == index[None, :]) & ~torch.eye(len(z), dtype=torch.bool)
    return float(torch.nn.functional.cross_entropy(s, same.float().argmax(1)))


# ----------------------------------------------------------------------------- (f) bad batches


@pytest.fixture(scope="module")
def gen() -> dict[str, type]:
    return {stem: load_file(GENERATED / f"{stem}.py") for stem in STEMS}


def test_wrong_z_shape_and_dtype(gen):
    SimCLR = gen["simclr"]
    for z in (randn(6), randn(2, 6, 3), torch.zeros(6, 3, dtype=torch.long)):
        with pytest.raises(ValueError, match=r"z must be a float \(N, D\) tensor"):
            SimCLR()(z, index=views(6))


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_z(gen, bad):
    z = randn(6, 3)
    z[2, 1] = bad
    with pytest.raises(ValueError, match="z contains NaN or inf"):
        gen["simclr"]()(z, index=views(6))


def test_non_finite_x(gen):
    x = randn(12, 3)
    x[0, 0] = math.nan
    with pytest.raises(ValueError, match=r"x must be a finite \(N, D\) tensor"):
        gen["card"](sigma=1.0)(randn(12, 2), x=x)


@pytest.mark.parametrize("length", [5, 7, 0])
def test_index_of_the_wrong_length(gen, length):
    with pytest.raises(ValueError, match=rf"index has {length} rows but z has 6"):
        gen["simclr"]()(randn(6, 3), index=torch.arange(length))


def test_labels_of_the_wrong_length_or_dtype(gen):
    with pytest.raises(ValueError, match="y has 4 rows but z has 6"):
        gen["supcon"]()(randn(6, 3), y=torch.tensor([0, 0, 1, 1]))
    with pytest.raises(ValueError, match=r"y must be an integer tensor of shape \(N,\)"):
        gen["supcon"]()(randn(6, 3), y=torch.zeros(6))


@pytest.mark.parametrize("y", [[0, 1, 10, 2], [-1, 0, 1, 2], [0, 1, 2, 99]])
def test_labels_out_of_range_for_cross_entropy(gen, y):
    module = gen["cross_entropy"]().double()
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 10\)"):
        module(randn(4, module.prototypes.shape[1]), y=torch.tensor(y))


@pytest.mark.parametrize("stem,n", [("sne", 20), ("tsne", 30), ("sne", 2)])
def test_perplexity_larger_than_the_batch(gen, stem, n):
    with pytest.raises(ValueError, match=r"perplexity 30 .*batch"):
        gen[stem]()(randn(n, 2), x=randn(n, 3, seed=1))


def test_every_row_empty_is_an_error_not_nan(gen):
    with pytest.raises(ValueError, match="no anchor in this batch has a non-empty row"):
        gen["simclr"]()(randn(4, 3), index=torch.arange(4))


def test_validate_false_skips_the_checks_but_not_the_result(gen):
    module = gen["simclr"](validate=False)
    z, index = randn(6, 3), views(6)
    assert abs(float(module(z, index=index)) - _nt_xent(z, index, 0.1)) <= 1e-12


def test_kmeans_empty_cluster_is_not_a_silent_zero(gen):
    x = randn(6, 2)
    phi = torch.nn.functional.one_hot(torch.tensor([0, 0, 1, 1, 2, 2]), 4).to(F64)
    full = gen["kmeans"]()(phi[:, :3], x=x)  # the same assignments without the empty column
    assert abs(float(gen["kmeans"]()(phi, x=x)) - float(full)) <= 1e-12


def test_kmeans_rejects_z_that_is_not_assignments(gen):
    with pytest.raises(ValueError):
        gen["kmeans"]()(randn(6, 4), x=randn(6, 2, seed=1))


# ----------------------------------------------------------------------------- (g) hyperparameters


@pytest.mark.parametrize(
    "stem,kwargs,name",
    [
        ("simclr", {"temperature": -1.0}, "temperature"),
        ("simclr", {"temperature": 0.0}, "temperature"),
        ("simclr", {"temperature": math.nan}, "temperature"),
        ("supcon", {"temperature": -0.1}, "temperature"),
        ("kmeans", {"sigma": 0.0}, "sigma"),
        ("kmeans", {"sigma": -2.0}, "sigma"),
        ("card", {"sigma": -1.0}, "sigma"),
    ],
)
def test_constructor_rejects_hyperparameters_outside_their_domain(gen, stem, kwargs, name):
    with pytest.raises(ValueError, match=rf"\b{name}\b"):
        gen[stem](**kwargs)


@pytest.mark.parametrize(
    "spec,bad,good",
    [
        (
            "param alpha = 0.5\np = debias(augmentation(index), alpha)\n"
            "q = student_t(f(x))\nmapper = linear(dim=2)",
            [{"alpha": 1.5}, {"alpha": -0.1}],
            [{"alpha": 0.0}, {"alpha": 1.0}],
        ),
        (
            "param k = 3\np = knn(x, k)\nq = student_t(f(x))\nmapper = linear(dim=2)",
            [{"k": 0}, {"k": 2.5}, {"k": -1}],
            [{"k": 1}, {"k": 4}],
        ),
    ],
    ids=["alpha_in_0_1", "k_positive_integer"],
)
def test_constructor_domains_of_compiled_specs(spec, bad, good):
    cls = compile_text(spec).load()
    for kwargs in bad:
        (name,) = kwargs
        with pytest.raises(ValueError, match=rf"\b{name}\b"):
            cls(**kwargs)
    for kwargs in good:
        cls(**kwargs)


@pytest.mark.parametrize(
    "q,name",
    [
        ("gaussian(f(x), temperature=2 * t, metric=cosine)", "t"),
        ("gaussian(f(x), sigma=t / 2)", "t"),
    ],
)
def test_domain_reaches_hyperparameters_inside_expressions(q, name):
    spec = f"param {name} = 0.5\np = augmentation(index)\nq = {q}\nmapper = linear(dim=3)"
    cls = compile_text(spec).load()
    for bad in (0.0, -0.5):
        with pytest.raises(ValueError, match=rf"\b{name}\b"):
            cls(**{name: bad})


# ----------------------------------------------------------------------------- (h) build_mapper

_P_Q = "p = augmentation(index)\nq = gaussian(f(x), temperature=0.5, metric=cosine)\n"


def test_table_mapper_needs_num_samples_and_embeds_indices():
    cls = compile_text(_P_Q + "mapper = table(dim=3)").load()
    with pytest.raises(ValueError, match="num_samples"):
        cls.build_mapper(7)
    mapper = cls.build_mapper(7, num_samples=11)
    out = mapper(torch.tensor([0, 5, 10, 5]))
    assert out.shape == (4, 3)
    torch.testing.assert_close(out[1], out[3])


@pytest.mark.parametrize("kind", ["linear(dim=5, sphere=true)", "mlp(dim=5, hidden=8, depth=3, sphere=true)"])  # fmt: skip
def test_sphere_mapper_normalises(kind):
    cls = compile_text(_P_Q + f"mapper = {kind}").load()
    mapper = cls.build_mapper(4)
    out = mapper(torch.randn(9, 4) * 10)
    assert out.shape == (9, 5)
    torch.testing.assert_close(out.norm(dim=1), torch.ones(9))


@pytest.mark.parametrize("kind", ["linear(dim=4, softmax=true)", "mlp(dim=4, hidden=8, depth=2, softmax=true)"])  # fmt: skip
def test_softmax_mapper_gives_assignments(kind):
    spec = "p = gaussian(x, sigma=1, diagonal=true)\nq = cluster(f(x))\nloss = reverse_kl(p, q)\n"
    cls = compile_text(spec + f"mapper = {kind}").load()
    mapper = cls.build_mapper(3)
    out = mapper(torch.randn(10, 3) * 5)
    assert out.shape == (10, 4)
    assert (out >= 0).all()
    torch.testing.assert_close(out.sum(1), torch.ones(10))


def test_mlp_mapper_depth_and_width():
    cls = compile_text(_P_Q + "mapper = mlp(dim=6, hidden=16, depth=3)").load()
    mapper = cls.build_mapper(4)
    linears = [m for m in mapper.modules() if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(4, 16), (16, 16), (16, 6)]
    assert mapper(torch.randn(3, 4)).shape == (3, 6)


@pytest.mark.parametrize(
    "stem,dim,table,softmax",
    [("simclr", 64, False, False), ("cross_entropy", 32, False, False), ("sne", 2, True, False),
     ("tsne", 2, True, False), ("kmeans", 10, False, True), ("card", None, True, False)],
)  # fmt: skip
def test_committed_mappers(gen, stem, dim, table, softmax):
    mapper = gen[stem].build_mapper(7, num_samples=20)
    out = mapper(torch.arange(5) if table else torch.randn(5, 7))
    assert out.shape[0] == 5 and (dim is None or out.shape[1] == dim)
    if softmax:
        torch.testing.assert_close(out.sum(1), torch.ones(5))


def test_long_values_are_cut_before_their_lowest_precedence_operators():
    """The layout rule for an assignment that fits on no line: one operand a line, at the
    top-level operators of the lowest precedence, never inside brackets or at a unary minus."""
    from icon_dsl.codegen.emit import _operands, assignment_lines

    assert _operands("-1 / 2 * self.nu - 1 / 2") == ["-1 / 2 * self.nu", "- 1 / 2"]
    assert _operands("a * (b + c) - d[1 - 2] + -e") == ["a * (b + c)", "- d[1 - 2]", "+ -e"]
    assert _operands("w * torch.log1p(c * d2)") == ["w", "* torch.log1p(c * d2)"]
    assert _operands("-(a + b)") == ["-(a + b)"]
    name, target = "n" * 61, "t" * 16  # 8 + 16 + 3 + 65 > 88 >= 8 + 4 + 65
    assert assignment_lines("x", "a + b", indent=8) == ["x = a + b"]
    assert assignment_lines(target, f"{name} + 1", indent=8) == [
        f"{target} = (", f"    {name} + 1", ")"
    ]  # fmt: skip
    assert assignment_lines("x", f"{name} * 2 - {name}", indent=8) == [
        "x = (", f"    {name} * 2", f"    - {name}", ")"
    ]  # fmt: skip
