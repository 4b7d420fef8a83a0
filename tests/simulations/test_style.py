"""The shared figure style: labels from the registry (with beta's equation derived once), one look per name."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from finitepref import registry  # noqa: E402
from simulations import style  # noqa: E402


@pytest.mark.parametrize("name", registry.names())
def test_labels_come_from_the_registry(name):
    assert style.label(name) == registry.get(name).label
    assert style.line(name)["label"] == registry.get(name).label
    assert style.short_label(name) == registry.get(name).label.split(" (")[0]


def test_kl_term_gives_the_papers_next_equation():
    assert style.label("reverse_kl", beta=0.1) == "Reverse KL (eq. 16)"
    assert style.label("pmle", beta=0.1) == "PMLE (eq. 5)"
    assert style.label("distill", beta=0.1).endswith("(eq. 12)")
    assert style.label("dpo", beta=0.1) == style.label("dpo")  # no other form
    assert style.label("reverse_kl", beta=0.0) == "Reverse KL (eq. 15)"


def test_every_estimator_has_its_own_colour_and_marker():
    names = registry.names()
    assert len({style.color(n) for n in names}) == len(names)
    assert len({style.marker(n) for n in names}) == len(names)
    assert style.linestyle("reverse_kl") != style.linestyle("pmle")


def test_unknown_names_get_a_fixed_fallback():
    assert style.color("nonesuch") == style.color("nonesuch") and style.marker("nonesuch") == style.marker("nonesuch")
    with pytest.raises(ValueError, match="expected one of"):
        style.label("nonesuch")


def test_pdfs_embed_truetype_fonts():
    assert matplotlib.rcParams["pdf.fonttype"] == 42


def test_zeros_are_drawn_on_the_floor():
    import numpy as np

    fig, ax = plt.subplots()
    x, m = np.array([1.0, 2.0, 3.0]), np.array([1e-2, 0.0, 1e-3])
    zeros = style.mean_with_band(ax, x, m, m, m, floor=1e-4, color="C0", marker="o")
    assert zeros == 1
    assert any(np.allclose(line.get_ydata(), [1e-4]) for line in ax.get_lines())
    plt.close(fig)


def test_finish_adds_one_figure_legend():
    fig, (a, b) = plt.subplots(1, 2, layout="constrained")
    a.plot([1, 2], [1, 2], label="x")
    b.plot([1, 2], [2, 1], label="x")
    style.finish(fig)
    assert len(fig.legends) == 1 and [t.get_text() for t in fig.legends[0].get_texts()] == ["x"]
    assert a.get_legend() is None
    plt.close(fig)


def test_finish_adds_grid_legend_title_once():
    fig, (a, b) = plt.subplots(1, 2)
    a.plot([1, 2], [1, 2], label="x")
    b.plot([1, 2], [2, 1])
    b.legend(["kept"], fontsize=5)
    assert style.finish(fig, "title", legends=True) is fig
    assert a.get_legend() is not None and b.get_legend().get_texts()[0].get_text() == "kept"
    assert fig._suptitle.get_text() == "title"
    plt.close(fig)
