"""Fine-tune curves from pretrained bases: a figure and a Markdown table from localization_curve.py's JSON.

    python scripts/plot_curves.py docs/measurements/base_design__*.json \
        --out docs/img/default-track-curves.png

Each input is one ``scripts/localization_curve.py --base DIR --generate N --save ...`` output (one base
design, one model). The figure has one panel per quantity (finding-word AUC-ROC, finding-word pointing
game, conditional AUROC, FID with the domain evaluator) against fine-tune steps, a line per (base design,
model); the table prints the same numbers (localization at the chosen timestep set).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

PANELS = (("word_auc", "finding-word AUC-ROC"), ("word_pointing", "finding-word pointing game"),
          ("cond_auroc", "conditional AUROC (generated images)"), ("fid_domain", "FID (domain evaluator)"))


def _design(path: Path) -> str:
    """``base_design__<design>__<model>.json`` -> ``<design>``."""
    parts = path.stem.split("__")
    return parts[1] if len(parts) >= 3 else path.stem


def load(paths: list[Path], timesteps: str) -> list[dict]:
    curves = []
    for path in paths:
        data = json.loads(path.read_text())
        by_step: dict[int, dict] = {}
        for row in data["rows"]:
            if row["timesteps"] in (None, timesteps):
                by_step.setdefault(row["step"], {}).update(
                    {k: v for k, v in row.items() if k not in ("step", "timesteps")})
        curves.append({"design": _design(path), "model": data["model"],
                       "steps": sorted(by_step), "rows": [by_step[s] for s in sorted(by_step)]})
    return curves


def markdown(curves: list[dict]) -> str:
    lines = ["| base design | model | steps | word AUC | word pointing | cond. AUROC | FID (domain) |",
             "|---|---|---|---|---|---|---|"]
    for c in curves:
        for step, row in zip(c["steps"], c["rows"]):
            cells = [f"{row[k]:.3f}" if k in row else "" for k in ("word_auc", "word_pointing", "cond_auroc")]
            fid = f"{row['fid_domain']:.1f}" if "fid_domain" in row else ""
            lines.append(f"| {c['design']} | {c['model']} | {step} | " + " | ".join(cells) + f" | {fid} |")
    return "\n".join(lines)


def plot(curves: list[dict], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(PANELS), figsize=(4.2 * len(PANELS), 3.6))
    styles = {"frozen-encoder": "-", "learnable-encoder": "--"}
    colours: dict[str, str] = {}
    for c in curves:
        colour = colours.setdefault(c["design"], f"C{len(colours)}")
        for ax, (key, title) in zip(axes, PANELS):
            points = [(s, r[key]) for s, r in zip(c["steps"], c["rows"]) if key in r]
            if points:
                xs, ys = zip(*points)
                ax.plot(xs, ys, styles.get(c["model"], ":"), marker="o", color=colour,
                        label=f"{c['design']} base, {c['model']}")
    for ax, (_, title) in zip(axes, PANELS):
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("fine-tune steps (batch 32)")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("curves", nargs="+", type=Path, help="localization_curve.py JSON files")
    parser.add_argument("--timesteps", default="low4", help="timestep set of the localization rows")
    parser.add_argument("--out", type=Path, help="PNG to write (omit: table only)")
    args = parser.parse_args()
    curves = load(args.curves, args.timesteps)
    print(markdown(curves))
    if args.out:
        plot(curves, args.out)
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
