"""The known methods of the I-Con periodic table, recognised by structure.

Takes: a checked IR. Guarantees: `recognise` returns the known method whose spec has the same
structure (the canonical IR with numbers abstracted, the mapper reduced to its class: a table, a
network, or cluster assignments; a Gaussian width far from 1 marks the sigma -> 0 / sigma -> inf
rows only where a rescaling of f(x) cannot absorb it, icon_dsl.scaling), or None for a new
method. Each entry's specs (`spec`, then `variants`) are real source text checked by the same
compiler, so the table cannot drift from the language. Every entry carries a citation, and the
limit entries the identity or bound that ties them to I-Con (docs/methods.md lists them).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import TypeGuard

from . import disk_cache
from . import registry as reg
from .ir import IR
from .pipeline import check
from .scaling import is_scale_free
from .source import Source


@dataclass(frozen=True)
class KnownMethod:
    key: str  # the spec file stem in specs/
    display: str  # the name shown in docs and the periodic table
    class_name: str  # the generated class name
    citation: str
    spec: str  # a representative spec (numbers do not matter for recognition)
    variants: tuple[str, ...] = ()  # other structures that are the same method
    identity: str = ""  # limits and bounds: the identity or bound that ties them to I-Con


KNOWN: tuple[KnownMethod, ...] = (
    KnownMethod(
        "tsne_joint",
        "t-SNE (joint form)",
        "TSNEJoint",
        "van der Maaten and Hinton, Visualizing Data using t-SNE, JMLR 2008",
        "mapper = table(dim=2)\np = joint(gaussian(x, perplexity=30))\nq = joint(student_t(f(x)))",
    ),
    KnownMethod(
        "debiased_tsimclr",
        "Debiased t-SimCLR",
        "DebiasedTSimCLR",
        "Alshammari et al., I-Con, ICLR 2025",
        "mapper = mlp(dim=2)\np = debias(augmentation(index), 0.6)\nq = student_t(f(x))",
    ),
    KnownMethod(
        "xsample",
        "X-Sample CL",
        "XSample",
        "Sobal et al., X-Sample Contrastive Loss, 2024",
        "mapper = mlp(dim=64)\np = gaussian(side, temperature=0.1, metric=cosine)\n"
        "q = gaussian(f(x), temperature=0.5, metric=cosine)",
    ),
    KnownMethod(
        "clip",
        "CLIP / CMC",
        "CLIP",
        "Radford et al., CLIP, ICML 2021; Tian et al., CMC, ECCV 2020",
        "mapper = mlp(dim=64)\np = cross_modal(index, modality)\n"
        "q = gaussian(f(x), temperature=0.07, metric=cosine)",
    ),
    KnownMethod(
        "triplet",
        "Triplet loss (sigma -> 0 limit)",
        "Triplet",
        "Schroff et al., FaceNet, CVPR 2015",
        "mapper = mlp(dim=64)\np = augmentation(index)\nq = gaussian(f(x), sigma=0.05, metric=cosine)",
        identity="bound: 2 sigma^2 loss - L_0 lies in [0, 2 sigma^2 log M], L_0 = mean_i "
        "[d2(i, partner) - min_k d2(i, k)], the hardest-negative triplet loss with margin 0 "
        "(cosine d2)",
    ),
    KnownMethod(
        "vicreg",
        "VICReg (sigma -> infinity limit)",
        "VICReg",
        "Bardes et al., VICReg, ICLR 2022",
        "mapper = mlp(dim=64)\np = augmentation(index)\nq = gaussian(f(x), sigma=100, metric=cosine)",
        identity="expansion: loss = log(N - 1) + L_inf / (2 sigma^2) + O(sigma^-4), L_inf = "
        "mean_i [d2(i, partner) - mean_k d2(i, k)] (cosine d2): VICReg's invariance term against "
        "a spread term, without the covariance term",
    ),
    KnownMethod(
        "pca",
        "PCA (sigma -> infinity limit)",
        "PCA",
        "I-Con (Alshammari et al., ICLR 2025); Pearson 1901",
        "mapper = linear(dim=2)\np = identity()\nq = gaussian(f(x), sigma=100, diagonal=true)",
        identity="expansion: loss = log N - tr Cov(f(x)) / sigma^2 + O(sigma^-4): maximal "
        "variance, PCA when W is orthonormal. The language states no such constraint and a "
        "rescaling absorbs sigma, so the spec itself is degenerate (unbounded)",
    ),
    KnownMethod(
        "spectral",
        "Spectral clustering",
        "SpectralClustering",
        "Ng, Jordan and Weiss, NeurIPS 2001",
        "mapper = linear(dim=10, softmax=true)\np = gaussian(side, sigma=1, diagonal=true)\n"
        "q = cluster(f(x))\nloss = reverse_kl(p, q)",
        variants=(
            "mapper = linear(dim=10, softmax=true)\n"
            "p = gaussian(side, sigma=1, metric=cosine, diagonal=true)\n"
            "q = cluster(f(x))\nloss = reverse_kl(p, q)",
        ),
    ),
    KnownMethod(
        "normalized_cuts",
        "Normalized cuts",
        "NormalizedCuts",
        "Shi and Malik, TPAMI 2000",
        "mapper = linear(dim=10, softmax=true)\np = graph(index)\nq = cluster(f(x))",
    ),
    KnownMethod(
        "tsne_graph",
        "t-SNE graph embedding",
        "TSNEGraph",
        "I-Con (Alshammari et al., ICLR 2025), periodic table",
        "mapper = table(dim=2)\np = graph(index)\nq = student_t(f(x))",
    ),
    KnownMethod(
        "debiased_infonce_clustering",
        "Debiased InfoNCE clustering",
        "DebiasedInfoNCEClustering",
        "Alshammari et al., I-Con, ICLR 2025",
        "mapper = linear(dim=10, softmax=true)\n"
        "p = debias(union(augmentation(index), knn(x, 10), walk(knn(x, 10), steps=1)), 0.2)\n"
        "q = debias(cluster(f(x)), 0.2)",
    ),
    KnownMethod(
        "parametric_sne",
        "Parametric SNE",
        "ParametricSNE",
        "van der Maaten, Learning a Parametric Embedding by Preserving Local Structure, "
        "AISTATS 2009",
        "mapper = mlp(dim=2)\np = gaussian(x, perplexity=30)\nq = gaussian(f(x))",
        variants=(
            "mapper = mlp(dim=2)\np = gaussian(x, perplexity=30)\n"
            "q = gaussian(f(x), temperature=0.5, metric=cosine)",
        ),
    ),
    KnownMethod(
        "parametric_tsne",
        "Parametric t-SNE",
        "ParametricTSNE",
        "van der Maaten, Learning a Parametric Embedding by Preserving Local Structure, "
        "AISTATS 2009",
        "mapper = mlp(dim=2)\np = gaussian(x, perplexity=30)\nq = student_t(f(x))",
    ),
    KnownMethod(
        "nerv",
        "NeRV (reverse KL end)",
        "NeRV",
        "Venna, Peltonen, Nybo, Aidos and Kaski, Information Retrieval Perspective to "
        "Nonlinear Dimensionality Reduction for Data Visualization, JMLR 2010",
        "mapper = table(dim=2)\np = gaussian(x, perplexity=30)\nq = gaussian(f(x))\n"
        "loss = reverse_kl(p, q)",
        variants=(
            "mapper = mlp(dim=2)\np = gaussian(x, perplexity=30)\nq = gaussian(f(x))\n"
            "loss = reverse_kl(p, q)",
            "mapper = mlp(dim=2)\np = gaussian(x, perplexity=30)\n"
            "q = gaussian(f(x), temperature=0.5, metric=cosine)\nloss = reverse_kl(p, q)",
        ),
        identity="NeRV minimises lambda KL(p, q) + (1 - lambda) KL(q, p) (KL(a, b): from a to b); this is lambda = 0",
    ),
    KnownMethod(
        "tnerv",
        "t-NeRV (reverse KL end)",
        "TNeRV",
        "Venna, Peltonen, Nybo, Aidos and Kaski, JMLR 2010",
        "mapper = table(dim=2)\np = gaussian(x, perplexity=30)\nq = student_t(f(x))\n"
        "loss = reverse_kl(p, q)",
        variants=(
            "mapper = mlp(dim=2)\np = gaussian(x, perplexity=30)\nq = student_t(f(x))\n"
            "loss = reverse_kl(p, q)",
        ),
        identity="t-NeRV minimises lambda KL(p, q) + (1 - lambda) KL(q, p) (KL(a, b): from a to b) with a Student-t "
        "q; this is lambda = 0",
    ),
    KnownMethod(
        "scan",
        "SCAN-style neighbour clustering",
        "SCANClustering",
        "Van Gansbeke et al., SCAN: Learning to Classify Images without Labels, ECCV 2020",
        "mapper = linear(dim=10, softmax=true)\np = knn(side, 10, metric=cosine)\n"
        "q = cluster(f(x))",
        variants=("mapper = linear(dim=10, softmax=true)\np = knn(side, 10)\nq = cluster(f(x))",),
    ),
    KnownMethod(
        "rim",
        "RIM / IMSAT-style mutual-information clustering",
        "MIClustering",
        "Krause, Perona and Gomes, Discriminative Clustering by Regularized Information "
        "Maximization, NeurIPS 2010; Hu et al., IMSAT, ICML 2017",
        "mapper = linear(dim=10, softmax=true)\np = identity()\nq = cluster(f(x))",
        identity="-log q(i|i) = -log sum_c phi_ic^2 / n_c: confident (sum_c phi_ic^2) and "
        "balanced (n_c) assignments, a collision-entropy form of RIM's H(mean phi) - mean H(phi)",
    ),
    KnownMethod(
        "uniformity",
        "Uniformity loss",
        "Uniformity",
        "Wang and Isola, Understanding Contrastive Representation Learning through Alignment "
        "and Uniformity on the Hypersphere, ICML 2020",
        "mapper = mlp(dim=64)\np = identity()\n"
        "q = gaussian(f(x), temperature=0.5, metric=cosine, diagonal=true)",
        identity="-log q(i|i) = log sum_k exp(-|z_i - z_k|^2 / (2 tau)) on the sphere: the "
        "per-anchor form of log mean_(i,k) exp(-t |z_i - z_k|^2), t = 1 / (2 tau)",
    ),
    KnownMethod(
        "sne",
        "SNE",
        "SNE",
        "Hinton and Roweis, Stochastic Neighbor Embedding, NeurIPS 2002",
        "mapper = table(dim=2)\np = gaussian(x, perplexity=30)\nq = gaussian(f(x), sigma=0.7071)",
    ),
    KnownMethod(
        "tsne",
        "t-SNE",
        "TSNE",
        "van der Maaten and Hinton, Visualizing Data using t-SNE, JMLR 2008",
        "mapper = table(dim=2)\np = gaussian(x, perplexity=30)\nq = student_t(f(x), dof=1)",
    ),
    KnownMethod(
        "simclr",
        "SimCLR / InfoNCE (NT-Xent)",
        "SimCLR",
        "Chen et al., A Simple Framework for Contrastive Learning, ICML 2020",
        "mapper = mlp(dim=64)\np = augmentation(index)\n"
        "q = gaussian(f(x), temperature=0.5, metric=cosine)",
    ),
    KnownMethod(
        "tsimclr",
        "t-SimCLR / t-SimCNE",
        "TSimCLR",
        "Boehm et al., Unsupervised visualization of image datasets using contrastive learning, ICLR 2023",
        "mapper = mlp(dim=2)\np = augmentation(index)\nq = student_t(f(x), dof=1)",
    ),
    KnownMethod(
        "supcon",
        "SupCon",
        "SupCon",
        "Khosla et al., Supervised Contrastive Learning, NeurIPS 2020",
        "mapper = mlp(dim=64)\np = label(y)\nq = gaussian(f(x), temperature=0.1, metric=cosine)",
    ),
    KnownMethod(
        "cross_entropy",
        "Cross-entropy classification / masked language modelling",
        "CrossEntropy",
        "I-Con (Alshammari et al., ICLR 2025), section 3: softmax over class prototypes",
        "mapper = mlp(dim=16)\np = classes(y, 10)\n"
        "q = gaussian(f(x), prototypes(10), metric=dot, temperature=1)",
    ),
    KnownMethod(
        "harmonic",
        "Harmonic loss",
        "Harmonic",
        "Baek et al., Harmonic Loss Trains Interpretable AI Models, 2025",
        "mapper = mlp(dim=16)\np = classes(y, 10)\nq = student_t(f(x), prototypes(10), dof=1)",
    ),
    KnownMethod(
        "lgsimclr",
        "LGSimCLR",
        "LGSimCLR",
        "El Banani et al., Learning Visual Representations via Language-Guided Sampling, CVPR 2023",
        "mapper = mlp(dim=64)\np = knn(side, 5, metric=cosine)\n"
        "q = gaussian(f(x), temperature=0.5, metric=cosine)",
    ),
    KnownMethod(
        "sne_uniform",
        "SNE with uniform affinities",
        "SNEUniform",
        "I-Con (Alshammari et al., ICLR 2025), periodic table",
        "mapper = table(dim=2)\np = knn(x, 15)\nq = gaussian(f(x))",
    ),
    KnownMethod(
        "tsne_uniform",
        "t-SNE with uniform affinities",
        "TSNEUniform",
        "I-Con (Alshammari et al., ICLR 2025), periodic table",
        "mapper = table(dim=2)\np = knn(x, 15)\nq = student_t(f(x))",
    ),
    KnownMethod(
        "kmeans",
        "k-means (probabilistic)",
        "KMeans",
        "I-Con (Alshammari et al., ICLR 2025), section 3: reverse KL with the cluster kernel",
        "mapper = linear(dim=10, softmax=true)\np = gaussian(x, sigma=1, diagonal=true)\n"
        "q = cluster(f(x))\nloss = reverse_kl(p, q)",
    ),
    KnownMethod(
        "dcd",
        "DCD / PMI clustering",
        "DCD",
        "Yang et al., Clustering by Nonnegative Matrix Factorization Using Graph Random Walk, 2012; "
        "Adaloglou et al., TEMI, BMVC 2023",
        "mapper = linear(dim=10, softmax=true)\np = knn(x, 5)\nq = cluster(f(x))\n",
    ),
    KnownMethod(
        "infonce_clustering",
        "InfoNCE clustering",
        "InfoNCEClustering",
        "I-Con (Alshammari et al., ICLR 2025)",
        "mapper = linear(dim=10, softmax=true)\np = augmentation(index)\nq = cluster(f(x))",
    ),
)


#: Generated class names for spec names whose CamelCase would read badly.
CLASS_NAMES = {m.key: m.class_name for m in KNOWN} | {
    "cmc": "CMC",
    "mlm": "MLM",
    "dcd": "DCD",
    "pmi_clustering": "PMIClustering",
}

# A fixed Gaussian width this far from 1 is the paper's sigma -> 0 or sigma -> infinity limit.
SMALL_SIGMA, LARGE_SIGMA = 0.1, 10.0


def _regime(ir: IR) -> str:
    """The limit row a fixed Gaussian width stands for; none where a rescaling absorbs it."""
    q = ir.roots["q"]
    sigma = ir.args(q).get("sigma")
    if ir.op(q) != "gaussian" or sigma is None or not getattr(sigma, "is_number", False):
        return ""
    if is_scale_free(ir, q):
        return ""
    if float(sigma) <= SMALL_SIGMA:
        return " sigma->0"
    return " sigma->inf" if float(sigma) >= LARGE_SIGMA else ""


def structure(ir: IR) -> str:
    """The structural signature: the canonical loss term, the width regime, the mapper's class."""
    mapper = ir.roots["mapper"]
    args = ir.args(mapper)
    kind = "network" if reg.BLOCKS[ir.op(mapper)].parametric else "table"
    if args.get("softmax"):
        kind = "assignments"
    return f"{ir.canonical(ir.roots['loss'], numbers=False)}{_regime(ir)} @ {kind}"


def _checked_ir(text: str) -> IR:
    """Parse, lower and check a catalogue spec."""
    return check(Source(text)).ir


@cache
def _index() -> dict[str, KnownMethod]:
    """Structure -> known method. Building it checks every catalogue spec (a tenth of a second),
    so the structures are kept on disk (`disk_cache`, valid for these exact sources)."""
    stored = disk_cache.read_json(_INDEX_KIND)
    if _valid_index(stored):
        return {sig: _BY_KEY[key] for sig, key in stored.items()}
    out: dict[str, KnownMethod] = {}
    for method in KNOWN:
        for text in (method.spec, *method.variants):
            sig = structure(_checked_ir(text))
            assert sig not in out, f"{method.key} and {out[sig].key} have the same structure"
            out[sig] = method
    disk_cache.write_json(_INDEX_KIND, {sig: method.key for sig, method in out.items()})
    return out


_INDEX_KIND = "known-structures"
_BY_KEY = {method.key: method for method in KNOWN}


def _valid_index(stored: object) -> TypeGuard[dict[str, str]]:
    return (
        isinstance(stored, dict)
        and len(stored) == sum(1 + len(m.variants) for m in KNOWN)
        and all(isinstance(s, str) and k in _BY_KEY for s, k in stored.items())
    )


def recognise(ir: IR) -> KnownMethod | None:
    """The known method with this structure, or None for a new one."""
    return _index().get(structure(ir))


def by_key(key: str) -> KnownMethod | None:
    return next((m for m in KNOWN if m.key == key), None)
