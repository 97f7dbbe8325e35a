"""The periodic table of I-Con methods, in stages.

1. `space`: the registry's families crossed into spec text (drafts).
2. `probe`: each checked draft run once on a random batch (rows sum to 1, the loss is finite).
3. `equivalence` and `limits`: candidates equal up to a rescaling of f(x) merged (sympy proof or
   numeric probe); the sigma-limit rows tied to their leading terms.
4. `candidates`: checks, degeneracy, known names, statuses (`enumerate_methods`).
5. `render`, `emit`: tables (terminal, markdown, JSON, HTML) and `.icon` files; `cli`: the
   `icon-dsl enumerate` command. Training and scoring the candidates is
   `icon_dsl.train.evaluate`, beside the training runtime.
"""

from __future__ import annotations

from .candidates import STATUSES, Candidate, Status, enumerate_methods
from .emit import emit_specs, spec_file_text
from .probe import probe_candidate, probe_inputs
from .render import (
    GENERATED_BY,
    RENDERERS,
    candidate_formulas,
    cell_summary,
    column_label,
    one_line,
    render_html,
    render_json,
    render_markdown,
    render_table,
    row_label,
    status_text,
)
from .space import (
    MAPPER_EXAMPLES,
    MODIFIER_EXAMPLES,
    P_EXAMPLES,
    Q_EXAMPLES,
    SIDE_EXAMPLES,
    Call,
    Modifier,
    QForm,
    _drafts,
    _Space,
    divergence_names,
    mapper_families,
    modifier_names,
    p_families,
    q_families,
    vector_inputs,
)

__all__ = [
    "STATUSES", "Candidate", "Status", "enumerate_methods", "emit_specs", "spec_file_text",
    "probe_candidate", "probe_inputs", "GENERATED_BY", "RENDERERS", "candidate_formulas",
    "cell_summary", "column_label", "one_line", "render_html", "render_json", "render_markdown",
    "render_table", "row_label", "status_text", "MAPPER_EXAMPLES", "MODIFIER_EXAMPLES",
    "P_EXAMPLES", "Q_EXAMPLES", "SIDE_EXAMPLES", "Call", "Modifier", "QForm", "_drafts",
    "_Space", "divergence_names", "mapper_families", "modifier_names", "p_families",
    "q_families", "vector_inputs",
]  # fmt: skip
