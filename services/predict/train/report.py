"""`partcheck evaluate --report OUT`: confusion matrix, reliability, risk-coverage PNGs and summary.md."""

from __future__ import annotations

import json
from pathlib import Path

from services.predict.train.evaluate import VERDICTS, EvalResult


def write_report(result: EvalResult, out: Path) -> list[Path]:
    """Write the PNG plots and a markdown summary into `out`; return the files written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    summary = result.summary()
    curves = result.curves()
    written: list[Path] = []

    counts = summary["confusion"]["counts"]
    fig, ax = plt.subplots(figsize=(5, 3))
    ax.imshow(counts, cmap="Blues")
    ax.set_xticks(range(len(VERDICTS)), VERDICTS)
    ax.set_yticks(range(2), ["ok (truth)", "defect (truth)"])
    for i, row in enumerate(counts):
        for j, v in enumerate(row):
            ax.text(j, i, str(v), ha="center", va="center", color="black")
    ax.set_title("verdicts at the card's thresholds")
    fig.tight_layout()
    written.append(out / "confusion.png")
    fig.savefig(written[-1], dpi=120)
    plt.close(fig)

    bins = curves["reliability"]
    fig, ax = plt.subplots(figsize=(4.5, 4))
    ax.plot([0.5, 1], [0.5, 1], "k--", lw=1, label="perfect")
    ax.plot([b["confidence"] for b in bins], [b["accuracy"] for b in bins], "o-", label="model")
    ax.set_xlabel("confidence of top label")
    ax.set_ylabel("accuracy")
    ax.set_title(f"reliability (ECE {summary['ece'] or 0:.4f})")
    ax.legend()
    fig.tight_layout()
    written.append(out / "reliability.png")
    fig.savefig(written[-1], dpi=120)
    plt.close(fig)

    rc = curves["risk_coverage"]
    fig, ax = plt.subplots(figsize=(5, 4))
    ax.plot([r["unclear_rate"] for r in rc], [r["escape_rate"] for r in rc], label="escape rate")
    ax.plot([r["unclear_rate"] for r in rc], [r["error_rate"] for r in rc], "--", label="wrong verdicts")
    ax.axvline(summary["unclear_rate"], color="grey", lw=1, ls=":", label="card's thresholds")
    ax.set_xlabel("unclear rate (symmetric threshold swept 0.5 to 1)")
    ax.set_ylabel("rate among all images")
    ax.set_title("risk-coverage")
    ax.legend()
    fig.tight_layout()
    written.append(out / "risk_coverage.png")
    fig.savefig(written[-1], dpi=120)
    plt.close(fig)

    wrong = [
        r
        for r in result.rows
        if (r.verdict == "ok" and r.truth == 1) or (r.verdict == "defect" and r.truth == 0)
    ]
    lines = [
        f"# Evaluation of {summary['model']} {summary['model_version']}",
        "",
        f"Data: `{summary['data']}`, {summary['n']} images "
        f"({summary['n_ok']} ok, {summary['n_defect']} defect).",
        "",
        "| metric | value |",
        "| --- | --- |",
        *[
            f"| {k} | {_fmt(summary[k])} |"
            for k in (
                "accuracy",
                "precision",
                "recall",
                "f1",
                "escapes",
                "false_rejects",
                "unclear",
                "unclear_rate",
                "rejected",
                "decided_accuracy",
                "ece",
                "latency_ms_p50",
                "latency_ms_p95",
            )
        ],
        f"| thresholds | t_ok {summary['thresholds']['t_ok']:.4f}, "
        f"t_defect {summary['thresholds']['t_defect']:.4f} |",
        "",
        "![confusion](confusion.png) ![reliability](reliability.png) ![risk-coverage](risk_coverage.png)",
        "",
        "## Wrong verdicts" if wrong else "No wrong verdicts.",
        *[
            f"- `{r.path}`: truth {'defect' if r.truth else 'ok'}, said {r.verdict}, "
            f"p_defect {r.p_defect:.4f}"
            for r in wrong
            if r.p_defect is not None
        ],
        "",
        "```json",
        json.dumps(summary, indent=2),
        "```",
    ]
    written.append(out / "summary.md")
    written[-1].write_text("\n".join(lines) + "\n")
    return written


def _fmt(v: object) -> str:
    if isinstance(v, float):
        return f"{v:.4f}"
    return str(v)
