"""The known methods of the I-Con periodic table, recognised by structure.

Takes: a checked IR. Guarantees: `recognise` returns the known method whose spec has the same
structure (the canonical IR with numbers abstracted, the mapper reduced to its class: a table, a
network, or cluster assignments), or None for a new method. Each entry's spec is real source text
checked by the same compiler, so the table cannot drift from the language.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from .ir import IR
from .pipeline import check


@dataclass(frozen=True)
class KnownMethod:
    key: str  # the spec file stem in specs/
    display: str  # the name shown in docs and the periodic table
    class_name: str  # the generated class name
    citation: str
    spec: str  # a representative spec (numbers do not matter for recognition)


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
        "mapper = mlp(dim=64)\np = augmentation(index)\nq = gaussian(f(x), sigma=0.05)",
    ),
    KnownMethod(
        "vicreg",
        "VICReg (sigma -> infinity limit)",
        "VICReg",
        "Bardes et al., VICReg, ICLR 2022",
        "mapper = mlp(dim=64)\np = augmentation(index)\nq = gaussian(f(x), sigma=100)",
    ),
    KnownMethod(
        "pca",
        "PCA (sigma -> infinity limit)",
        "PCA",
        "I-Con (Alshammari et al., ICLR 2025)",
        "mapper = linear(dim=2)\np = identity()\nq = gaussian(f(x), sigma=100, diagonal=true)",
    ),
    KnownMethod(
        "spectral",
        "Spectral clustering",
        "SpectralClustering",
        "Ng, Jordan and Weiss, NeurIPS 2001",
        "mapper = linear(dim=10, softmax=true)\np = gaussian(side, sigma=1, diagonal=true)\n"
        "q = cluster(f(x))\nloss = reverse_kl(p, q)",
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
    q = ir.roots["q"]
    sigma = ir.args(q).get("sigma")
    if ir.op(q) != "gaussian" or sigma is None or not getattr(sigma, "is_number", False):
        return ""
    if float(sigma) <= SMALL_SIGMA:
        return " sigma->0"
    return " sigma->inf" if float(sigma) >= LARGE_SIGMA else ""


def structure(ir: IR) -> str:
    """The structural signature: the canonical loss term, the width regime, the mapper's class."""
    mapper = ir.roots["mapper"]
    args = ir.args(mapper)
    kind = "table" if ir.op(mapper) == "table" else "network"
    if args.get("softmax"):
        kind = "assignments"
    return f"{ir.canonical(ir.roots['loss'], numbers=False)}{_regime(ir)} @ {kind}"


@cache
def _index() -> dict[str, KnownMethod]:
    out: dict[str, KnownMethod] = {}
    for method in KNOWN:
        sig = structure(check(method.spec).ir)
        assert sig not in out, f"{method.key} and {out[sig].key} have the same structure"
        out[sig] = method
    return out


def recognise(ir: IR) -> KnownMethod | None:
    """The known method with this structure, or None for a new one."""
    return _index().get(structure(ir))


def by_key(key: str) -> KnownMethod | None:
    return next((m for m in KNOWN if m.key == key), None)
