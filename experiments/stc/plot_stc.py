"""Pseudo-label error per STC round (experiments/stc/stc_pseudo_label_error.png) from the runs of
experiments/stc/run.sh: NME of the pseudo-labels of 300 labeled ytf68/train frames, treated
as unlabeled, overall and for the least and most confident quarter.

    .venv/bin/python experiments/stc/plot_stc.py
"""

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

RUNS = Path("runs")
OUT = Path("experiments/stc/stc_pseudo_label_error.png")


def main() -> None:
    fig, ax = plt.subplots(figsize=(7, 4))
    for seed, colour in ((0, "tab:blue"), (1, "tab:orange")):
        rounds = sorted((RUNS / f"stc_paper_s{seed}").glob("pseudo_round*.json"))
        probes = [json.loads(path.read_text())["probe"] for path in rounds]
        x = range(1, len(probes) + 1)
        ax.plot(x, [100 * p["nme"] for p in probes], marker="o", color=colour, label=f"seed {seed}: all")
        ax.plot(
            x,
            [100 * p["nme_by_confidence_quartile"][0] for p in probes],
            ls="--",
            color=colour,
            label=f"seed {seed}: least confident quarter",
        )
        ax.plot(
            x,
            [100 * p["nme_by_confidence_quartile"][-1] for p in probes],
            ls=":",
            color=colour,
            label=f"seed {seed}: most confident quarter",
        )
        for r, p in zip(x, probes):
            print(
                f"seed {seed} round {r}: NME {100 * p['nme']:.2f}%, median {100 * p['median']:.2f}%, "
                f"failures {100 * p['failures']:.1f}%, by confidence quartile "
                + " / ".join(f"{100 * q:.2f}" for q in p["nme_by_confidence_quartile"])
            )
    ax.set(
        xlabel="round (task trained on pseudo-labels: stride 96, 64, full, full)",
        ylabel="pseudo-label NME % (300 ytf68/train frames)",
        title="Pseudo-label error per STC round",
    )
    ax.set_xticks(range(1, 5))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(OUT, dpi=90)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
