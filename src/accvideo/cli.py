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
        out=str(out), gif=gif, device=device, dtype=dtype,
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
):
    """Write a tiny random Wan 2.1 pipeline (diffusers format, no download) for tests and smoke runs."""
    from accvideo.models.tiny import save_tiny_wan
    from accvideo.sample.run import prepare_output

    prepare_output(out / "model_index.json")
    save_tiny_wan(out, seed, num_layers=layers)
    typer.echo(f"wrote a tiny random Wan 2.1 pipeline to {out}")


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


def main(argv: list[str] | None = None) -> None:
    """Console entry point: AccVideoError -> 'error: ...' on stderr and exit code 2."""
    _quiet_libraries()
    try:
        app(args=argv, prog_name="accvideo")
    except AccVideoError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
