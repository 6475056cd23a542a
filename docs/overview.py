"""Draw ``overview.png``, the one picture of the README and the landing page.

    python docs/overview.py        # writes docs/overview.png (matplotlib only)
"""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch  # noqa: E402

OUT = Path(__file__).resolve().parent / "overview.png"
BLUE, ORANGE, GREEN, GREY = "#1f77b4", "#ff7f0e", "#2ca02c", "#555555"


def box(ax, x, y, w, h, title, lines, color):
    ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0.02,rounding_size=0.06",
                                fc=color + "18", ec=color, lw=1.6))
    ax.text(x + w / 2, y + h - 0.12, title, ha="center", va="top", fontsize=11, weight="bold", color=color)
    ax.text(x + w / 2, y + h - 0.42, "\n".join(lines), ha="center", va="top", fontsize=8.6, color="#222222",
            linespacing=1.35)


def arrow(ax, a, b, text=None, color=GREY, dy=0.08):
    ax.add_patch(FancyArrowPatch(a, b, arrowstyle="-|>", mutation_scale=14, lw=1.4, color=color))
    if text:
        ax.text((a[0] + b[0]) / 2, (a[1] + b[1]) / 2 + dy, text, ha="center", va="bottom", fontsize=8.2,
                color=color, style="italic")


def main() -> None:
    fig, ax = plt.subplots(figsize=(11, 4.2), dpi=110)
    ax.set_xlim(0, 11)
    ax.set_ylim(0.3, 4.3)
    ax.axis("off")

    # a particle set: two species, no order
    rng = np.random.default_rng(3)
    xy = rng.random((60, 2))
    species = (xy[:, 0] + 0.15 * rng.standard_normal(60) > 0.5).astype(int)
    sx, sy, s = 0.25, 1.5, 1.45
    ax.add_patch(FancyBboxPatch((sx - 0.05, sy - 0.05), s + 0.1, s + 0.1, boxstyle="round,pad=0.02",
                                fc="white", ec=GREY, lw=1.0))
    for k, c in ((0, BLUE), (1, ORANGE)):
        p = xy[species == k]
        ax.scatter(sx + s * p[:, 0], sy + s * p[:, 1], s=14, c=c, edgecolors="none")
    ax.text(sx + s / 2, sy + s + 0.2, "OpenMM simulation", ha="center", fontsize=11, weight="bold", color=GREY)
    ax.text(sx + s / 2, sy - 0.2, "a set of particles X\n(positions, species; any n, no order)",
            ha="center", va="top", fontsize=8.6)

    box(ax, 2.35, 2.6, 2.55, 1.3, "encoder φ̂ (DeepSet)",
        ["ẑ = ρ( mean ψ(xᶦ) )", "permutation invariant", "O(n), any n"], BLUE)
    box(ax, 2.35, 0.55, 2.55, 1.3, "flow decoder p(x | ẑ)",
        ["reconstructs the density", "(1/n) Σ N(x; xᶦ, ε²I)", "never an ordered list"], BLUE)
    box(ax, 5.55, 1.45, 2.45, 1.6, "dynamics on z = [z̄, ẑ]",
        ["ODE or SDE, learned", "z̄: observables you know", "ẑ: closure variables",
         "encode once, then extrapolate"], GREEN)
    box(ax, 8.55, 2.6, 2.3, 1.3, "surrogate",
        ["ensembles far past MD", "with uncertainty;", "lift back to particles"], ORANGE)
    box(ax, 8.55, 0.55, 2.3, 1.3, "exported models",
        ["reporters (live ẑ)", "OpenMM TorchForce CVs", "PLUMED, GROMACS, C++"], ORANGE)

    arrow(ax, (1.8, 2.75), (2.33, 3.2))
    ax.text(2.12, 2.72, "encode", fontsize=8.2, color=GREY, style="italic", ha="center", va="top")
    arrow(ax, (3.62, 2.58), (3.62, 1.87), None, BLUE)
    ax.text(3.72, 2.22, "stage 1: trained together", fontsize=8.2, color=BLUE, style="italic", va="center")
    arrow(ax, (4.92, 3.2), (5.53, 2.8), "ẑ", BLUE)
    ax.text(6.78, 1.2, "stage 2: encoder frozen", fontsize=8.2, color=GREEN, style="italic", ha="center", va="top")
    arrow(ax, (8.02, 2.75), (8.53, 3.2))
    arrow(ax, (8.02, 1.75), (8.53, 1.3))
    fig.tight_layout(pad=0.3)
    fig.savefig(OUT)
    print(OUT)


if __name__ == "__main__":
    main()
