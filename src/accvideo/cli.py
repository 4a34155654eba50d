"""The `accvideo` command line: one verb per pipeline stage; bad input exits 2 with one line."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from accvideo import __version__
from accvideo.errors import AccVideoError

app = typer.Typer(
    help="accvideo: distil flow-matching video diffusion models into few-step students (AccVideo).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool):
    if value:
        typer.echo(f"accvideo {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
):
    """Synthesize teacher trajectories, distil a few-step student, sample, export and evaluate."""


@app.command()
def sample(
    model: Annotated[str, typer.Option(help="Local diffusers pipeline folder, or 'builtin'.")] = "builtin",
    prompt: Annotated[str, typer.Option(help="Text prompt.")] = "a red circle moving left on a grey background",
    negative_prompt: Annotated[str, typer.Option(help="Negative prompt for CFG.")] = "",
    steps: Annotated[Optional[int], typer.Option(help="Euler steps [teacher: 50].")] = None,
    guidance: Annotated[Optional[float], typer.Option(help="CFG scale; 1 turns CFG off [teacher: 5].")] = None,
    shift: Annotated[Optional[float], typer.Option(help="Sigma shift [the checkpoint's].")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the starting noise.")] = 0,
    frames: Annotated[int, typer.Option(help="Frames, 4k+1.")] = 17,
    size: Annotated[str, typer.Option(help="HxW, multiples of 16.")] = "64x64",
    fps: Annotated[int, typer.Option(help="Frames per second of the file.")] = 8,
    out: Annotated[Path, typer.Option(help="Output .mp4 (or .gif); settings go to the same name .yaml.")] = Path(
        "clip.mp4"
    ),
    gif: Annotated[bool, typer.Option("--gif", help="Also write a GIF.")] = False,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:1 ...")] = "auto",
    dtype: Annotated[str, typer.Option(help="auto (bf16 on GPU, fp32 on CPU), float32, bfloat16.")] = "auto",
    offload: Annotated[bool, typer.Option("--offload", help="Text encoders and VAE on the CPU between calls.")] = False,
    vae_tiling: Annotated[Optional[str], typer.Option(help="VAE tiling: auto (untiled unless OOM), on, off.")] = None,
    compile_: Annotated[bool, typer.Option("--compile", help="torch.compile the transformer (slow first call).")] = False,
    config: Annotated[Optional[Path], typer.Option(help="YAML with any of these settings.")] = None,
):
    """Generate one clip with the Euler sampler (progress bar; resolved settings written beside it)."""
    from accvideo.core.config import load_config
    from accvideo.sample.config import SampleConfig, parse_size
    from accvideo.sample.run import sample as run_sample

    try:
        height, width = parse_size(size)
    except ValueError as exc:
        raise AccVideoError(str(exc)) from None
    cfg = load_config(
        SampleConfig, config, model=model, prompt=prompt, negative_prompt=negative_prompt, steps=steps,
        guidance=guidance, shift=shift, seed=seed, frames=frames, height=height, width=width, fps=fps,
        out=str(out), gif=gif, device=device, dtype=dtype, offload=offload or None, vae_tiling=vae_tiling,
        compile=compile_ or None,
    )
    resolved = run_sample(cfg)
    typer.echo(
        f"wrote {', '.join(resolved['outputs'])} ({resolved['resolved_steps']} steps, "
        f"guidance {resolved['resolved_guidance']}, shift {resolved['resolved_shift']}, "
        f"{resolved['seconds_generate']:.1f} s)"
    )


@app.command("tiny-model")
def tiny_model(
    out: Annotated[Path, typer.Argument(help="Folder to write the pipeline to.")],
    seed: Annotated[int, typer.Option(help="Seed of the random weights.")] = 0,
    layers: Annotated[int, typer.Option(help="Transformer blocks.")] = 2,
    family: Annotated[str, typer.Option(help="wan, or hunyuan (1 dual + LAYERS single blocks).")] = "wan",
):
    """Write a tiny random Wan 2.1 or HunyuanVideo pipeline (diffusers format, no download) for tests."""
    from accvideo.core.files import prepare_output
    from accvideo.models.tiny import save_tiny_hunyuan, save_tiny_wan

    if family not in ("wan", "hunyuan"):
        raise AccVideoError(f"--family must be wan or hunyuan; got {family!r}")
    prepare_output(out / "model_index.json")
    if family == "wan":
        save_tiny_wan(out, seed, num_layers=layers)
    else:
        save_tiny_hunyuan(out, seed, num_single_layers=layers)
    typer.echo(f"wrote a tiny random {'Wan 2.1' if family == 'wan' else 'HunyuanVideo'} pipeline to {out}")


teacher_app = typer.Typer(help="The built-in teacher (a tiny Wan 2.1 on the procedural world).", no_args_is_help=True)
app.add_typer(teacher_app, name="teacher")


@teacher_app.command("train")
def teacher_train(
    out: Annotated[Path, typer.Option(help="Folder for the finished diffusers pipeline.")],
    overrides: Annotated[Optional[list[str]], typer.Argument(help="key=value settings (see teacher/config.py).")] = None,
    config: Annotated[Optional[Path], typer.Option(help="YAML with TeacherConfig settings.")] = None,
    work: Annotated[Optional[Path], typer.Option(help="Resumable training state [OUT.work].")] = None,
    threads: Annotated[int, typer.Option(help="CPU threads (0: torch's default).")] = 0,
    device: Annotated[str, typer.Option(help="Where the transformer trains: cpu, cuda or auto (the VAE: cpu).")] = "cpu",
):
    """Train the built-in teacher from scratch with a fixed seed; rerun the same command to resume."""
    import torch

    from accvideo.core.config import load_config
    from accvideo.core.files import prepare_output
    from accvideo.core.runtime import resolve_device
    from accvideo.teacher.config import TeacherConfig
    from accvideo.teacher.train import train_teacher

    cfg = load_config(TeacherConfig, config, overrides or ())
    prepare_output(out / "model_index.json")
    if threads > 0:
        torch.set_num_threads(threads)
    stats = train_teacher(cfg, out, work, resolve_device(device))
    typer.echo(f"wrote the teacher to {out}: {stats}")


@app.command()
def toy1d(
    out: Annotated[Path, typer.Option(help="Folder for toy1d.json and the panel PNGs.")] = Path("toy1d"),
    seed: Annotated[int, typer.Option(help="Seed of every phase (same seed, same numbers).")] = 0,
    preset: Annotated[str, typer.Option(help="full (the documented run) or quick (for tests).")] = "full",
    threads: Annotated[int, typer.Option(help="CPU threads (0: torch's default; 1 suits tiny nets).")] = 1,
):
    """The paper's 1D experiment (Figure 2): teacher, useless points, KD, DMD and AccVideo students."""
    import torch

    from accvideo.toy1d import preset as toy1d_preset
    from accvideo.toy1d import run_toy1d, summary_table, write_results

    cfg = toy1d_preset(preset)
    if threads > 0:
        torch.set_num_threads(threads)
    result = run_toy1d(cfg, seed=seed)
    paths = write_results(result, out)
    typer.echo(summary_table(result.numbers))
    typer.echo(f"wrote {paths[0]} and {len(paths) - 1} PNGs to {out}")


@app.command("prompts")
def prompts_command(
    n: Annotated[int, typer.Option("--n", help="How many prompts.")],
    out: Annotated[Path, typer.Option(help=".txt (one caption a line) or .jsonl (with each item's seed).")] = Path(
        "prompts.txt"
    ),
    split: Annotated[str, typer.Option(help="train, heldout (combinations kept out of training) or all.")] = "train",
    seed: Annotated[int, typer.Option(help="Seed of the order and of the per-item seeds.")] = 0,
):
    """Write N captions of the built-in world, for `accvideo synthesize --prompts`."""
    from accvideo.synthesize.prompts import write_prompts
    from accvideo.world import prompts as world_prompts

    if n < 1:
        raise AccVideoError(f"--n must be at least 1; got {n}")
    items = world_prompts(n, split, seed)
    write_prompts(out, items)
    typer.echo(f"wrote {len(items)} {split} prompts to {out}")


@app.command("synthesize")
def synthesize_command(
    prompts: Annotated[Path, typer.Option(help="Prompt file: .txt (one a line) or .jsonl with per-item seeds.")],
    out: Annotated[Path, typer.Option(help="Dataset folder: shards, synvid.yaml and videos/.")],
    teacher: Annotated[Optional[str], typer.Option(help="Teacher pipeline folder or 'builtin' (default).")] = None,
    steps: Annotated[Optional[int], typer.Option(help="Teacher Euler steps n (default 50).")] = None,
    key_steps: Annotated[Optional[int], typer.Option(help="Uniform key steps m on the grid (default 5).")] = None,
    key_indices: Annotated[Optional[str], typer.Option(help="Explicit key indices, e.g. 0,10,20,30,40,50.")] = None,
    shift: Annotated[Optional[float], typer.Option(help="Sigma shift (default: the teacher's).")] = None,
    guidance: Annotated[Optional[float], typer.Option(help="The teacher's CFG scale [Wan 5, HunyuanVideo 1].")] = None,
    negative_prompt: Annotated[Optional[str], typer.Option(help="Negative prompt for CFG (default empty).")] = None,
    seed: Annotated[Optional[int], typer.Option(help="Base seed of text-file items (default 0).")] = None,
    store: Annotated[Optional[str], typer.Option(help="key: m+1 latents (default); all: whole trajectory.")] = None,
    videos: Annotated[bool, typer.Option("--videos", help="Also write each item's MP4 under videos/.")] = False,
    frames: Annotated[Optional[int], typer.Option(help="Frames, 4k+1 (default 17).")] = None,
    size: Annotated[Optional[str], typer.Option(help="HxW, multiples of 16 (default 64x64).")] = None,
    shard_size: Annotated[Optional[int], typer.Option(help="Items per shard file (default 32).")] = None,
    batch: Annotated[Optional[int], typer.Option(help="Items per teacher call (default 4).")] = None,
    device: Annotated[Optional[str], typer.Option(help="auto (default), cpu, cuda; torchrun: a GPU a rank.")] = None,
    dtype: Annotated[Optional[str], typer.Option(help="auto (bf16 on GPU, fp32 on CPU), float32, bfloat16.")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace shards of another teacher/settings.")] = False,
    offload: Annotated[bool, typer.Option("--offload", help="Text encoders and VAE on the CPU between calls.")] = False,
    vae_tiling: Annotated[Optional[str], typer.Option(help="VAE tiling: auto (untiled unless OOM), on, off.")] = None,
    compile_: Annotated[bool, typer.Option("--compile", help="torch.compile the transformer (slow first call).")] = False,
    config: Annotated[Optional[Path], typer.Option(help="YAML with any SynthConfig settings.")] = None,
):
    """Teacher trajectories -> SynVid shards; rerun to resume; under torchrun each rank writes its own shards."""
    from accvideo.core.config import load_config
    from accvideo.sample.config import parse_size
    from accvideo.synthesize.config import SynthConfig
    from accvideo.synthesize.run import synthesize as run_synthesize

    try:
        height, width = parse_size(size) if size is not None else (None, None)
    except ValueError as exc:
        raise AccVideoError(str(exc)) from None
    try:
        indices = [int(i) for i in key_indices.split(",")] if key_indices is not None else None
    except ValueError:
        raise AccVideoError(f"--key-indices must be integers like 0,10,20,30,40,50; got {key_indices!r}") from None
    cfg = load_config(
        SynthConfig, config, teacher=teacher, prompts=str(prompts), out=str(out), steps=steps, key_steps=key_steps,
        key_indices=indices, shift=shift, guidance=guidance, negative_prompt=negative_prompt, seed=seed,
        store=store, videos=videos or None, frames=frames, height=height, width=width, shard_size=shard_size,
        batch=batch, device=device, dtype=dtype, overwrite=overwrite or None, offload=offload or None,
        vae_tiling=vae_tiling, compile=compile_ or None,
    )
    s = run_synthesize(cfg)
    if s["rank"] == 0:
        blanks = f"; skipped {s['blank_lines']} blank line(s)" if s["blank_lines"] else ""
        typer.echo(
            f"{s['out']}: synthesized {s['items_written']} item(s) in {s['shards_written']} shard(s), kept "
            f"{s['shards_skipped']} complete shard(s) (rank 0 of {s['world_size']}; {s['items']} items in "
            f"{s['shards']} shards in all; teacher {s['teacher'][:19]}...){blanks}"
        )


@app.command()
def evaluate(
    model: Annotated[Optional[str], typer.Option(help="Pipeline folder, 'builtin' or a distill run to sample and score.")] = None,
    videos: Annotated[Optional[Path], typer.Option(help="Folder of clips + manifest.jsonl to score instead.")] = None,
    prompts: Annotated[int, typer.Option(help="World prompts to sample (with --model).")] = 64,
    split: Annotated[str, typer.Option(help="Prompt split: heldout, train or all.")] = "heldout",
    seed: Annotated[int, typer.Option(help="Seed of the prompt list (each prompt gets its own seed).")] = 0,
    steps: Annotated[Optional[int], typer.Option(help="Euler steps [teacher: 50; student: its key steps].")] = None,
    guidance: Annotated[Optional[float], typer.Option(help="CFG scale; 1 turns CFG off [teacher: 5; student: 1].")] = None,
    shift: Annotated[Optional[float], typer.Option(help="Sigma shift (default: the checkpoint's).")] = None,
    negative_prompt: Annotated[str, typer.Option(help="Negative prompt for CFG.")] = "",
    batch_size: Annotated[int, typer.Option(help="Clips sampled together (results do not depend on it).")] = 4,
    classifier: Annotated[Optional[Path], typer.Option(help="Classifier folder (default: the shipped one).")] = None,
    out: Annotated[Path, typer.Option(help="Folder for metrics.json, metrics.md and videos/.")] = Path("eval"),
    video_format: Annotated[str, typer.Option(help="Sampled clips kept as mp4, gif, npy (lossless) or none.")] = "mp4",
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:1 ...")] = "auto",
    dtype: Annotated[str, typer.Option(help="auto (bf16 on GPU, fp32 on CPU), float32, bfloat16.")] = "auto",
    offload: Annotated[bool, typer.Option("--offload", help="Text encoders and VAE on the CPU between calls.")] = False,
    vae_tiling: Annotated[Optional[str], typer.Option(help="VAE tiling: auto (untiled unless OOM), on, off.")] = None,
    compile_: Annotated[bool, typer.Option("--compile", help="torch.compile the transformer (slow first call).")] = False,
    config: Annotated[Optional[Path], typer.Option(help="YAML with any EvaluateConfig settings.")] = None,
):
    """ToyBench: prompt-alignment accuracy, Frechet distance and temporal consistency of a model or clip folder."""
    import warnings

    from accvideo.core.config import load_config
    from accvideo.evaluate.config import EvaluateConfig
    from accvideo.evaluate.report import metrics_table
    from accvideo.evaluate.run import run_evaluate
    from accvideo.world import PromptWarning

    cfg = load_config(
        EvaluateConfig, config, model=model, videos=str(videos) if videos is not None else None, prompts=prompts,
        split=split, seed=seed, steps=steps, guidance=guidance, shift=shift, negative_prompt=negative_prompt,
        batch_size=batch_size, classifier=str(classifier) if classifier is not None else None, out=str(out),
        video_format=video_format, device=device, dtype=dtype, offload=offload or None, vae_tiling=vae_tiling,
        compile=compile_ or None,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PromptWarning)  # reported below, one line each
        metrics = run_evaluate(cfg)
    for w in metrics["warnings"]:
        typer.echo(f"warning: {w}", err=True)
    typer.echo(metrics_table(metrics))
    typer.echo(f"wrote {out / 'metrics.json'} and {out / 'metrics.md'}")


@app.command("world-train-classifier")
def world_train_classifier(
    out: Annotated[Path, typer.Option(help="Folder for classifier.safetensors + classifier.json.")] = Path(
        "classifier"
    ),
    steps: Annotated[int, typer.Option(help="Optimizer steps.")] = 300,
    batch_size: Annotated[int, typer.Option(help="Freshly rendered clips per step.")] = 32,
    lr: Annotated[float, typer.Option(help="Peak learning rate (one-cycle schedule).")] = 3e-3,
    seed: Annotated[int, typer.Option(help="Seed of weights, clips and augmentations (same seed, same net).")] = 0,
    eval_items: Annotated[int, typer.Option(help="Held-out clips scored at the end.")] = 128,
    threads: Annotated[int, typer.Option(help="CPU threads (0: torch's default).")] = 0,
    config: Annotated[Optional[Path], typer.Option(help="YAML with any ClassifierTrainConfig settings.")] = None,
):
    """Train the ToyBench classifier on the world's train combinations (the shipped one: the defaults)."""
    from accvideo.core.config import load_config
    from accvideo.core.files import prepare_output
    from accvideo.evaluate.train import ClassifierTrainConfig, train_classifier

    cfg = load_config(
        ClassifierTrainConfig, config, out=str(out), steps=steps, batch_size=batch_size, lr=lr, seed=seed,
        eval_items=eval_items, threads=threads,
    )
    prepare_output(out / "classifier.json")
    info = train_classifier(cfg)
    acc = ", ".join(f"{k} {v:.3f}" for k, v in info["heldout_accuracy"].items())
    typer.echo(f"wrote {out} ({info['train_seconds']:.0f} s; held-out accuracy: {acc or 'not measured'})")


@app.command("distill")
def distill_command(
    overrides: Annotated[Optional[list[str]], typer.Argument(help="key=value settings (see distill/config.py).")] = None,
    teacher: Annotated[Optional[str], typer.Option(help="Teacher pipeline folder or 'builtin' (default).")] = None,
    data: Annotated[Optional[Path], typer.Option(help="SynVid folder made by `accvideo synthesize` from it.")] = None,
    out: Annotated[Optional[Path], typer.Option(help="Run folder: config, losses, checkpoint, student/.")] = None,
    config: Annotated[Optional[Path], typer.Option(help="YAML with any DistillConfig settings.")] = None,
):
    """Distil a few-step student from SynVid (L_traj + adversarial heads); rerun the same command to resume."""
    from accvideo.core.config import load_config
    from accvideo.distill import DistillConfig, distill

    cfg = load_config(
        DistillConfig, config, overrides or (), teacher=teacher, data=str(data) if data is not None else None,
        out=str(out) if out is not None else None,
    )
    s = distill(cfg)
    if s["rank"] != 0:  # under torchrun, rank 0 reports for all
        return
    typer.echo(
        f"wrote the {s['key_steps']}-step student to {s['student']} ({s['iterations']} iterations, "
        f"{s['samples']} samples; losses in {Path(s['out']) / 'losses.jsonl'}, losses.png)"
    )


@app.command("export")
def export_command(
    run: Annotated[Path, typer.Argument(help="Distill run folder, or a student folder (with student.json).")],
    out: Annotated[Path, typer.Option(help="Folder to write (replaced whole; built aside, then renamed).")],
    fmt: Annotated[str, typer.Option("--format", help="diffusers (a pipeline) or lora (a LoRA file).")] = "diffusers",
    dtype: Annotated[Optional[str], typer.Option(help="Cast the transformer (e.g. bfloat16).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace a non-empty folder that is no export.")] = False,
):
    """Export a student that stock diffusers loads; its scheduler lands on the student's key sigmas."""
    from accvideo.export import export_run

    m = export_run(run, fmt, out, force=force, dtype=dtype)
    call = ", ".join(f"{k}={v!r}" for k, v in m["call"].items() if k != "prompt_template")
    typer.echo(f"wrote a {len(m['key_sigmas']) - 1}-step {m['family']} student ({fmt}) to {m['out']}; "
               f"load it with {m['pipeline']} and call it with {call}")


def _chain_config(config, overrides, preset: str, **values):
    from accvideo.core.config import load_config
    from accvideo.demo import ChainConfig, quick_config

    presets = {"default": ChainConfig, "quick": quick_config}
    if preset not in presets:
        raise AccVideoError(f"--preset must be one of {', '.join(presets)}; got {preset!r}")
    return load_config(ChainConfig, config, overrides or (), base=presets[preset](), **values)


@app.command()
def demo(
    overrides: Annotated[Optional[list[str]], typer.Argument(help="key=value settings (see demo/config.py).")] = None,
    out: Annotated[Path, typer.Option(help="Run folder; the report goes to OUT/report/.")] = Path("demo"),
    teacher: Annotated[str, typer.Option(help="Teacher pipeline folder or 'builtin'.")] = "builtin",
    preset: Annotated[str, typer.Option(help="default (under 10 min on 2 CPU cores) or quick (seconds).")] = "default",
    config: Annotated[Optional[Path], typer.Option(help="YAML with any ChainConfig settings.")] = None,
):
    """The whole chain on the built-in model: prompts, synthesize, distill, sample, evaluate, report."""
    from accvideo.demo import run_demo

    cfg = _chain_config(config, overrides, out=str(out), teacher=teacher, preset=preset)
    run_demo(cfg, echo=typer.echo)


@app.command()
def ablate(
    overrides: Annotated[Optional[list[str]], typer.Argument(help="key=value settings (see demo/config.py).")] = None,
    out: Annotated[Path, typer.Option(help="Run folder for the students, clips and ablation.md/json/png.")] = Path(
        "ablation"
    ),
    teacher: Annotated[str, typer.Option(help="Teacher pipeline folder or 'builtin'.")] = "builtin",
    preset: Annotated[str, typer.Option(help="default or quick (seconds).")] = "default",
    config: Annotated[Optional[Path], typer.Option(help="YAML with any ChainConfig settings.")] = None,
):
    """The paper's ablation on ToyBench: (a) teacher m steps, (b) + L_traj, (c) + L_adv shared head, (d) full."""
    from accvideo.demo import run_ablation

    cfg = _chain_config(config, overrides, out=str(out), teacher=teacher, preset=preset)
    run_ablation(cfg, echo=typer.echo)


@app.command()
def bench(
    model: Annotated[str, typer.Option(help="Pipeline folder, 'builtin' or a distill run.")] = "builtin",
    random_weights: Annotated[bool, typer.Option("--random-weights", help="Build --config with random weights.")] = False,
    config_name: Annotated[str, typer.Option("--config", help="wan2.1-t2v-1.3b, wan2.1-t2v-14b, wan-tiny ...")] = (
        "wan2.1-t2v-1.3b"
    ),
    size: Annotated[str, typer.Option(help="HxWxF, e.g. 480x832x81.")] = "64x64x17",
    teacher_steps: Annotated[int, typer.Option(help="Teacher Euler steps (with CFG).")] = 50,
    student_steps: Annotated[int, typer.Option(help="Student Euler steps (no CFG).")] = 5,
    guidance: Annotated[Optional[float], typer.Option(help="The teacher's CFG scale [the family's: Wan 5].")] = None,
    repeats: Annotated[int, typer.Option(help="Timed runs of each; the fastest is reported.")] = 1,
    offload: Annotated[bool, typer.Option("--offload", help="Text encoders and VAE on the CPU between calls.")] = False,
    vae_tiling: Annotated[Optional[str], typer.Option(help="VAE tiling: auto (untiled unless OOM), on, off.")] = None,
    compile_: Annotated[bool, typer.Option("--compile", help="torch.compile the transformer (slow first call).")] = False,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:1 ...")] = "auto",
    dtype: Annotated[str, typer.Option(help="auto (bf16 on GPU, fp32 on CPU), float32, bfloat16.")] = "auto",
    out: Annotated[Path, typer.Option(help="Folder for bench.json and bench.md.")] = Path("bench"),
):
    """Time per stage (text encoding, each transformer step, VAE decode, the rest) of teacher and student."""
    from accvideo.bench import BenchConfig, bench_markdown, run_bench
    from accvideo.bench.run import parse_size3
    from accvideo.core.config import load_config

    height, width, frames = parse_size3(size)
    cfg = load_config(BenchConfig, None, (), model=model, random_weights=random_weights, config=config_name,
                      height=height, width=width, frames=frames, teacher_steps=teacher_steps,
                      student_steps=student_steps, guidance=guidance, repeats=repeats, vae_tiling=vae_tiling,
                      offload=offload, compile=compile_,
                      device=device, dtype=dtype, out=str(out))
    report = run_bench(cfg)
    typer.echo(bench_markdown(report))
    typer.echo(f"wrote {out / 'bench.json'} and {out / 'bench.md'}")


def _quiet_libraries() -> None:
    """Keep upstream info logs and per-component progress bars out of our output."""
    import warnings

    try:
        import diffusers
        import transformers

        diffusers.utils.logging.set_verbosity_error()
        diffusers.utils.logging.disable_progress_bar()
        transformers.utils.logging.set_verbosity_error()
        transformers.utils.logging.disable_progress_bar()
    except ImportError:  # pragma: no cover - both are dependencies
        pass
    warnings.filterwarnings("ignore", category=FutureWarning)
    # our own warnings (e.g. prompt words the built-in model never saw) as one line each
    warnings.formatwarning = lambda message, category, *args, **kw: f"warning: {message}\n"


def main(argv: list[str] | None = None) -> None:
    """Console entry point: AccVideoError -> 'error: ...' on stderr and exit code 2."""
    _quiet_libraries()
    try:
        app(args=argv, prog_name="accvideo")
    except AccVideoError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except Exception as exc:  # torch's OutOfMemoryError, without importing torch for every command
        if type(exc).__name__ != "OutOfMemoryError":
            raise
        typer.echo(f"error: out of GPU memory ({str(exc).splitlines()[0][:120]}); try --offload (text encoders and "
                   "VAE on the CPU), a LoRA student (lora_rank=64), a smaller --size or batch, or --vae-tiling on",
                   err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
