"""`accvideo demo`: the whole chain on the built-in model, ending in OUT/report/."""

from __future__ import annotations

import platform
import time
from pathlib import Path

import torch

from accvideo import __version__
from accvideo.core.config import to_dict
from accvideo.core.files import prepare_output, write_json_atomic, write_text_atomic
from accvideo.core.outputs import FolderLock, claim_folder
from accvideo.core.runtime import resolve_device, resolve_model
from accvideo.core.video import write_video
from accvideo.demo.chain import (
    Sampler,
    Stages,
    check_training_settings,
    distill_student,
    eval_pairs,
    kept_samplers,
    kept_seconds,
    load_clips,
    read_json_dict,
    record_training_settings,
    report_kept,
    sample_and_score,
    synthesize_synvid,
    training_seconds,
    write_train_prompts,
)
from accvideo.demo.config import DEMO_TRAINING, ChainConfig
from accvideo.demo.report import comparison_table, copy_plot, frame_grid_png, grid_video
from accvideo.models import adapter_class
from accvideo.models.decoder import check_decoder

WORK_STAGES = {"synthesize", "distill", "sample + evaluate"}  # a rerun that reused them all keeps the report
REPORT_FILES = ("index.md", "metrics.json", "grid.mp4", "grid.gif", "frames.png", "losses.png")


def demo_samplers(cfg: ChainConfig, student_run: Path) -> list[Sampler]:
    """The rows: the n-step teacher with CFG, the naive m-step teacher with CFG, the m-step student (and, with
    --decoder, that student decoded by the tiny decoder)."""
    n, m = cfg.teacher_steps, cfg.key_steps
    rows = [
        Sampler(f"teacher-{n}", cfg.teacher, n, cfg.guidance, f"teacher {n} steps"),
        Sampler(f"teacher-{m}", cfg.teacher, m, cfg.guidance, f"teacher {m} steps"),
        Sampler(f"student-{m}", str(student_run), None, None, f"student {m} steps"),
    ]
    if cfg.decoder is not None:  # the same student, decoded by the tiny decoder
        rows.append(
            Sampler(f"student-{m}-tiny", str(student_run), None, None, f"student {m} steps, tiny decoder", cfg.decoder)
        )
    return rows


def run_demo(cfg: ChainConfig, progress: bool = True, echo=print) -> dict:
    """prompts -> synthesize -> distill -> sample -> evaluate -> report; returns metrics.json's content."""
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    resolve_device(cfg.device)  # a device this machine lacks is refused before the folder is claimed
    adapter_class(resolve_model(cfg.teacher))  # likewise a teacher folder that is none
    if cfg.decoder is not None:  # missing, damaged or another VAE's: before the chain, not at its sampling stage
        check_decoder(cfg.decoder, resolve_model(cfg.teacher))
    out = Path(cfg.out)
    report = prepare_output(claim_folder(out, "demo") / "report" / "index.md").parent
    with FolderLock(out, "demo"):  # a second demo on this folder would race this one's stages and report
        return _demo_stages(cfg, out, report, progress, echo)


def _demo_stages(cfg: ChainConfig, out: Path, report: Path, progress: bool, echo) -> dict:
    earlier = read_json_dict(report / "metrics.json")
    settings = check_training_settings(cfg, DEMO_TRAINING, report / "metrics.json")
    stages = Stages(echo)
    t0 = time.perf_counter()
    reused = set()
    with stages("prompts"):
        prompts_file = write_train_prompts(cfg)
    with stages("synthesize"):
        synvid, written = synthesize_synvid(cfg, prompts_file, progress)
    # recorded once the folder's prompts and SynVid took these settings: a rerun they refused wrote its own
    # settings here, and then neither the old nor the new ones could rerun
    record_training_settings(cfg, "demo", settings)
    reused |= {"synthesize"} if written == 0 else set()
    before = training_seconds(out / "distill")
    with stages("distill"):
        run = distill_student(cfg, synvid, "distill", progress)
    trained = training_seconds(run)
    reused |= {"distill"} if trained is not None and trained == before else set()
    samplers = demo_samplers(cfg, run)
    kept = kept_samplers(cfg, samplers)
    with stages("sample + evaluate"):
        results = sample_and_score(cfg, samplers, progress)
    reused |= {"sample + evaluate"} if kept == set(results) else set()
    metrics = {
        "accvideo": __version__,
        "config": to_dict(cfg),
        "machine": _machine(),
        "seconds": {},  # below, once the report is made
        "train_seconds": trained or earlier.get("train_seconds"),
        "eval_pairs": [list(p) for p in eval_pairs(cfg)],
        "results": results,
    }
    if report_kept(earlier, metrics, reused, WORK_STAGES, [report / name for name in REPORT_FILES]):
        echo(comparison_table(earlier["results"]))
        echo(f"nothing to do: {report / 'index.md'} already reports these settings (every stage reused)")
        return earlier
    with stages("report"):
        pairs = eval_pairs(cfg)[: cfg.grid_prompts]
        columns = [load_clips(r["videos"], cfg.grid_prompts) for r in results.values()]
        labels = [s.name for s in samplers]
        grid = grid_video(columns, labels)
        write_video(report / "grid.mp4", grid, cfg.fps)
        write_video(report / "grid.gif", grid, cfg.fps)
        frame_grid_png(
            report / "frames.png", columns, [r["label"] for r in results.values()], [p for p, _ in pairs[:2]]
        )
        copy_plot(run / "losses.png", report / "losses.png")
    seconds = {**stages.seconds, "total": round(time.perf_counter() - t0, 2)}
    # a stage this run reused whole keeps the seconds measured when its work was done (a rescoring rerun would
    # otherwise report a near-zero distill); train_seconds: the training behind the student, over all its resumes
    metrics["seconds"] = kept_seconds(seconds, earlier.get("seconds", {}), reused)
    write_json_atomic(report / "metrics.json", metrics)
    write_text_atomic(report / "index.md", index_markdown(cfg, metrics))
    echo(comparison_table(results))
    echo(f"wrote {report / 'index.md'} (total {metrics['seconds']['total']:.0f} s)")
    return metrics


def index_markdown(cfg: ChainConfig, metrics: dict) -> str:
    """The report's front page: what ran, the table, stage times, the pictures."""
    n, m = cfg.teacher_steps, cfg.key_steps
    lines = [
        "# accvideo demo report",
        "",
        f"Teacher `{cfg.teacher}`; {cfg.train_prompts} train-split prompts -> SynVid ({n} Euler steps, CFG "
        f"{cfg.guidance:g}, {m} key steps) -> a {m}-step {'LoRA r' + str(cfg.lora_rank) if cfg.lora_rank else 'full'} "
        f"student ({cfg.iterations} iterations of batch {cfg.batch}, lr {cfg.lr:g}) -> ToyBench on "
        f"{cfg.eval_prompts} held-out prompt and seed pairs (the same for every row).",
        "",
        "## ToyBench",
        "",
        comparison_table(metrics["results"]),
        "",
        "Accuracy: the shipped classifier's shape / colour / motion predictions against the prompt. Frechet: "
        "distance between classifier features of these clips and of real clips of the same prompts (lower is "
        "better; the reference row is two real sets, the floor at this N). Temporal: docs/toybench.md.",
        "",
        "## Time per stage",
        "",
        "| stage | seconds |",
        "|---|---:|",
        *[f"| {k} | {v:.1f} |" for k, v in metrics["seconds"].items()],
        "",
        f"Machine: {metrics['machine']}.",
        "",
        "## Clips",
        "",
        f"`grid.mp4` / `grid.gif`: columns {', '.join(r for r in metrics['results'])}; rows: the first "
        f"{cfg.grid_prompts} evaluation prompts, same seeds in every column.",
        "",
        "![frames](frames.png)",
        "",
        "## Distillation losses",
        "",
        "![losses](losses.png)",
        "",
    ]
    return "\n".join(lines)


def _machine() -> str:
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"CPU, {torch.get_num_threads()} threads"
    return f"{platform.machine()} {device}, torch {torch.__version__}"
