"""ToyBench reports: the full metrics as JSON and a Markdown table beside it."""

from __future__ import annotations

from pathlib import Path

from accvideo.core.files import write_json_atomic, write_text_atomic


def _fmt(v, digits: int = 4) -> str:
    """A metric cell: fixed digits, '-' when missing."""
    return "-" if v is None else f"{v:.{digits}f}"


def metrics_table(metrics: dict) -> str:
    """Markdown table: each metric for the generated clips and for real clips of the same prompts."""
    ref = metrics.get("reference", {})
    acc, ref_acc = metrics.get("accuracy", {}), ref.get("accuracy", {})
    rows = [(f"{k} accuracy", acc.get(k), ref_acc.get(k), "higher") for k in acc if k not in ("mean", "joint")]
    rows += [
        ("mean accuracy", acc.get("mean"), ref_acc.get("mean"), "higher"),
        ("joint accuracy (all attributes right)", acc.get("joint"), ref_acc.get("joint"), "higher"),
        (
            "Frechet distance (classifier features)",
            metrics.get("frechet_distance"),
            ref.get("frechet_distance"),
            "lower",
        ),
        ("temporal consistency", metrics.get("temporal_consistency"), ref.get("temporal_consistency"), "higher"),
    ]
    lines = ["| metric | generated | real reference | better |", "| --- | ---: | ---: | --- |"]
    lines += [f"| {name} | {_fmt(g)} | {_fmt(r)} | {b} |" for name, g, r, b in rows]
    return "\n".join(lines)


def metrics_markdown(metrics: dict) -> str:
    """The whole metrics.md: source, table, warnings."""
    src = metrics.get("source", {})
    what = src.get("student_dir") or src.get("model_dir") or src.get("videos") or "videos"
    head = [f"# ToyBench: {what}", "", f"{metrics['n_videos']} clips, {metrics['n_scored']} scored."]
    if "steps" in src:
        head.append(
            f"Sampled on the {src['split']} split, {src['steps']} Euler steps, guidance {src['guidance']}, "
            f"shift {src['shift']}."
        )
    head += [
        "",
        metrics_table(metrics),
        "",
        "Real reference: accuracy and temporal consistency of real clips rendered for the same prompts and "
        "seeds; Frechet distance between two real sets of the same prompts (other seeds), the floor at this N.",
    ]
    if metrics.get("warnings"):
        head += ["", "## Warnings", ""] + [f"- {w}" for w in metrics["warnings"]]
    return "\n".join(head) + "\n"


def write_reports(metrics: dict, out: str | Path) -> tuple[Path, Path]:
    """OUT/metrics.json (everything, per-clip predictions included) and OUT/metrics.md."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / "metrics.json", metrics, indent=2)
    write_text_atomic(out / "metrics.md", metrics_markdown(metrics))
    return out / "metrics.json", out / "metrics.md"
