"""The real-size dress rehearsal (issue 18): random-weight teachers through synthesize -> distill -> export -> stock
diffusers, with seconds, peak GPU memory and peak host memory per stage, in one JSON.

    python benchmarks/rehearsal.py --out runs/rehearsal            # GPU: Wan2.1-1.3B at 480x832x81, HunyuanVideo
    python benchmarks/rehearsal.py --tiny --out runs/rehearsal     # CPU: the same code paths at tiny size (~10 s)
    python benchmarks/rehearsal.py --tiny --bf16 ...               # CPU, with the GPU's precision (bf16)
    python benchmarks/rehearsal.py --bf16 --size 5x64x64 --steps 4 --lora-only ...   # CPU: the real widths, small clips

Wan2.1-1.3B: the published transformer (30 blocks, 1,536 wide) and VAE with random weights; the text encoder is a
UMT5 of the real width (4,096) with 1 layer, since distillation never loads it and synthesis runs it once per batch
(UMT5-XXL's 0.03 s a prompt on an H200, docs/bench.md). Synthesize 2 items with 50 steps (CFG 5, 2 key steps), distill
3 iterations of a full student and of a LoRA rank-64 student (grad_checkpointing=auto: on at this size; `--tiny`
forces it on, to run the same path), export the
full student as a diffusers folder and the LoRA as a file, then stock `WanPipeline` loads each and samples 3 steps.
HunyuanVideo: the published width (24 heads x 128) with 2 dual + 2 single blocks at 544x960x33, the same chain with
a LoRA student (the family's path at real width). `--tiny`: both families at tiny sizes on the CPU.
Writes OUT/rehearsal.json (and prints it); `--json PATH` copies it (benchmarks/results/).
"""

from __future__ import annotations

import argparse
import gc
import json
import resource
import shutil
import sys
import time
import traceback
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch

from accvideo.bench.configs import UMT5_XXL, hunyuan_builder, wan_builder
from accvideo.distill import DistillConfig, distill
from accvideo.export import export_run
from accvideo.models.identity import teacher_identity
from accvideo.synthesize import SynthConfig, synthesize

PROMPTS = ["a red fox running through snow at dawn", "a paper boat drifting down a rain gutter"]
TEXT_4096 = {**UMT5_XXL, "num_layers": 1, "d_ff": 1024, "num_heads": 16, "vocab_size": 1024}  # real width, 1 layer
LLAMA_4096 = dict(
    vocab_size=1024,
    hidden_size=4096,
    intermediate_size=1024,
    num_hidden_layers=3,  # the pipeline reads hidden_states[-3]
    num_attention_heads=32,
    num_key_value_heads=8,
    max_position_embeddings=512,
)
CLIP_768 = dict(
    vocab_size=1024,
    hidden_size=768,
    intermediate_size=1024,
    num_hidden_layers=1,
    num_attention_heads=12,
    max_position_embeddings=77,
    projection_dim=768,
)
# the prompt alone, no chat template (the word tokenizer would spell the template out letter by letter)
PLAIN = {"prompt_template": {"template": "{}", "crop_start": 0}, "max_sequence_length": 256}
TINY_TEMPLATE = {**PLAIN, "max_sequence_length": 16}

# family -> mode -> (builder, frames, height, width, teacher steps, distill iterations, extra accvideo.json)
PLANS = {
    "wan": {
        "real": (wan_builder(dim_heads=12, layers=30, ffn=8960, text=TEXT_4096), 81, 480, 832, 50, 3, {}),
        "tiny": (
            wan_builder(
                dim_heads=2,
                layers=2,
                ffn=64,
                text=dict(
                    d_model=32, d_ff=64, num_layers=1, num_heads=2, d_kv=16, vocab_size=256, is_encoder_decoder=False
                ),
                vae=dict(base_dim=8, z_dim=16, dim_mult=[1, 2, 2, 2]),
                max_length=32,
            ),
            9,
            32,
            32,
            50,
            3,
            {},
        ),
    },
    "hunyuanvideo": {
        "real": (
            hunyuan_builder(
                heads=24,
                dual=2,
                single=2,
                refiner=1,
                llama=LLAMA_4096,
                clip=CLIP_768,
                template=PLAIN["prompt_template"],
            ),
            33,
            544,
            960,
            10,
            2,
            PLAIN,
        ),
        "tiny": (
            hunyuan_builder(
                heads=2,
                dual=1,
                single=1,
                refiner=1,
                llama={
                    **LLAMA_4096,
                    "hidden_size": 32,
                    "intermediate_size": 64,
                    "num_attention_heads": 2,
                    "num_key_value_heads": 1,
                },
                clip={
                    **CLIP_768,
                    "hidden_size": 16,
                    "intermediate_size": 32,
                    "num_attention_heads": 2,
                    "projection_dim": 16,
                },
                vae=dict(latent_channels=16, block_out_channels=(8, 8, 8, 8), layers_per_block=1, norm_num_groups=4),
                max_length=16,
                template=TINY_TEMPLATE["prompt_template"],
            ),
            9,
            32,
            32,
            10,
            2,
            TINY_TEMPLATE,
        ),
    },
}


def host_peak_gib() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)


@contextmanager
def stage(record: dict, name: str, device: torch.device, flush):
    """Time a stage; its peak GPU memory (allocator: allocated, the targets' measure, and reserved, what the card must
    hold) from the memory held at its start, and the process's host peak so far. `flush()` writes the JSON before and
    after, so a run cut short (timeout) still leaves what it measured and where it stopped; a stage that raises (out
    of memory) records its seconds and peaks too, marked failed."""
    gc.collect()
    entry: dict = {}
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        entry["gpu_start_gib"] = round(torch.cuda.memory_allocated(device) / 2**30, 2)
    print(f"[rehearsal] {name} ...", flush=True)
    record[name] = {**entry, "running": True}
    flush()
    t0 = time.perf_counter()
    try:
        yield
    except BaseException:
        entry["failed"] = True
        raise
    finally:
        if device.type == "cuda":
            try:
                torch.cuda.synchronize(device)
            except RuntimeError:  # after a CUDA error: the peaks below are still the allocator's
                pass
            entry["gpu_peak_gib"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
            entry["gpu_reserved_peak_gib"] = round(torch.cuda.max_memory_reserved(device) / 2**30, 2)
        entry.update(seconds=round(time.perf_counter() - t0, 2), host_peak_gib_so_far=host_peak_gib())
        record[name] = entry
        flush()
        print(f"[rehearsal] {name}: {entry}", flush=True)


def stock_sample(pipeline_cls, folder: Path, device, dtype, size, steps: int, lora: Path | None, call: dict):
    """The stock diffusers pipeline loads the export (or the teacher + the LoRA file) and samples `steps` steps."""
    pipe = pipeline_cls.from_pretrained(str(folder), torch_dtype=dtype, local_files_only=True).to(device)
    if lora is not None:
        pipe.load_lora_weights(str(lora), weight_name="pytorch_lora_weights.safetensors")
    frames, height, width = size
    kw = {k: v for k, v in call.items() if k not in ("num_inference_steps",)}
    out = pipe(
        PROMPTS[0],
        num_frames=frames,
        height=height,
        width=width,
        num_inference_steps=steps,
        generator=torch.Generator().manual_seed(0),
        output_type="np",
        **kw,
    ).frames
    return list(out[0].shape) if hasattr(out[0], "shape") else [len(out[0])]


def rehearse(
    family: str,
    mode: str,
    work: Path,
    device: torch.device,
    dtype: torch.dtype,
    record: dict,
    flush,
    size: tuple[int, int, int] | None = None,
    steps: int | None = None,
    lora_only: bool = False,
    single_file: bool = False,
) -> None:
    """One family through every stage; `dtype` is the teacher's (and synthesis's); bf16 also turns on bf16 autocast."""
    builder, frames, height, width, plan_steps, iterations, extra = PLANS[family][mode]
    frames, height, width = size or (frames, height, width)
    steps = steps or plan_steps
    size = (frames, height, width)
    record.update(family=family, mode=mode, size=list(size), teacher_steps=steps, stages={})
    stages: dict = record["stages"]
    teacher, prompts = work / "teacher", work / "prompts.txt"
    prompts.write_text("\n".join(PROMPTS) + "\n")
    with stage(stages, "build_and_save_teacher", device, flush):
        torch.manual_seed(0)
        adapter = builder(device, dtype)
        record["transformer_params"] = sum(p.numel() for p in adapter.transformer.parameters())
        adapter.pipe.save_pretrained(str(teacher), safe_serialization=True)
        del adapter
        if extra:
            (teacher / "accvideo.json").write_text(json.dumps(extra))
    record["teacher_gib"] = round(sum(p.stat().st_size for p in teacher.rglob("*") if p.is_file()) / 2**30, 3)
    t0 = time.perf_counter()
    teacher_identity(teacher)
    record["identity_seconds"] = round(time.perf_counter() - t0, 4)
    common = dict(device=str(device), dtype=str(dtype).removeprefix("torch."))
    with stage(stages, "synthesize", device, flush):
        synthesize(
            SynthConfig(
                teacher=str(teacher),
                prompts=str(prompts),
                out=str(work / "synvid"),
                steps=steps,
                key_steps=2,
                frames=frames,
                height=height,
                width=width,
                batch=2,
                shard_size=2,
                **common,
            ),
            progress=False,
        )
    # LoRA first, each student on its own: a full student stopped by the disk or memory keeps the LoRA's numbers
    students = [("lora", 64)] if family == "hunyuanvideo" or lora_only else [("lora", 64), ("full", 0)]
    plan = Plan(family, mode, work, teacher, device, dtype, size, iterations, single_file)
    for name, rank in students:
        try:
            rehearse_student(plan, name, rank, stages, flush)
        except Exception as e:
            traceback.print_exc()
            record.setdefault("errors", {})[name] = f"{type(e).__name__}: {e}"[:2000]
            record.setdefault("tracebacks", {})[name] = traceback.format_exc()[-3000:]
        for folder in (f"distill-{name}", f"export-{name}", f"single-{name}"):  # free the disk for the next student
            shutil.rmtree(work / folder, ignore_errors=True)
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()


@dataclass(frozen=True)
class Plan:
    """What every student of one family's rehearsal shares."""

    family: str
    mode: str
    work: Path  # holds teacher/ and synvid/
    teacher: Path
    device: torch.device
    dtype: torch.dtype
    size: tuple[int, int, int]
    iterations: int
    single_file: bool


def rehearse_student(p: Plan, name: str, rank: int, stages: dict, flush) -> None:
    """One student (full when `rank` is 0, else LoRA of that rank): distill, export, stock diffusers sampling."""
    from diffusers import HunyuanVideoPipeline, WanPipeline

    run = p.work / f"distill-{name}"
    with stage(stages, f"distill_{name}", p.device, flush):
        summary = distill(
            DistillConfig(
                teacher=str(p.teacher),
                data=str(p.work / "synvid"),
                out=str(run),
                iterations=p.iterations,
                batch=1,
                lora_rank=rank,
                probe_every=0,
                checkpoint_every=100,
                head_channels=64,
                mixed_precision="bf16" if p.dtype == torch.bfloat16 else "off",
                grad_checkpointing="auto" if p.mode == "real" else "on",  # tiny: the same path as real size
                device=str(p.device),
                dtype=str(p.dtype).removeprefix("torch."),
            ),
            progress=False,
        )
    stages[f"distill_{name}"]["summary_peak_memory_mb"] = summary["peak_memory_mb"]
    stages[f"distill_{name}"]["save_seconds"] = summary["save_seconds"]  # against torchrun's 30 s SIGTERM grace
    stages[f"distill_{name}"]["grad_checkpointing"] = _resolved(run)
    # the training state (16 B a parameter: 23 GB for the full 1.3B) goes before the export, which reads student/
    for part in ("checkpoint.pt", "checkpoint"):
        shutil.rmtree(run / part, ignore_errors=True) if (run / part).is_dir() else (run / part).unlink(True)
    if p.single_file:
        with stage(stages, f"single_file_{name}", p.device, flush):
            found = single_file_round_trip(run, p.teacher, p.work / f"single-{name}")
        stages[f"single_file_{name}"].update(found)
    fmt = "lora" if rank else "diffusers"
    export = p.work / f"export-{name}"
    with stage(stages, f"export_{name}", p.device, flush):
        manifest = export_run(run, fmt, export, dtype="bfloat16" if fmt == "diffusers" else None)
    pipeline_cls = WanPipeline if p.family == "wan" else HunyuanVideoPipeline
    with stage(stages, f"stock_{pipeline_cls.__name__}_{name}", p.device, flush):
        folder, lora = (export, None) if fmt == "diffusers" else (p.teacher, export)
        shape = stock_sample(pipeline_cls, folder, p.device, p.dtype, p.size, 3, lora, manifest["call"])
    stages[f"stock_{pipeline_cls.__name__}_{name}"]["video_shape"] = shape


def single_file_round_trip(run: Path, teacher: Path, out: Path) -> dict:
    """`export --format single-file`, then diffusers' `from_single_file` with the teacher's config: whether every
    tensor it loads equals the student's transformer (a LoRA student fused). HunyuanVideo's reader splits a single
    block's fused matrix at the published width (3,072), so a narrower HunyuanVideo is not read (`skipped`)."""
    import diffusers

    from accvideo.export.formats import student_transformer
    from accvideo.export.single_file_hunyuan import READER_WIDTH
    from accvideo.export.source import read_source

    export_run(run, "single-file", out)
    want = student_transformer(read_source(run)).state_dict()
    cls = getattr(diffusers, json.loads((teacher / "transformer" / "config.json").read_text())["_class_name"])
    width = want["x_embedder.proj.weight"].shape[0] if "x_embedder.proj.weight" in want else None
    if cls.__name__ == "HunyuanVideoTransformer3DModel" and width != READER_WIDTH:
        return {"skipped": f"width {width}: diffusers' reader splits at {READER_WIDTH}"}
    path = out / "transformer.safetensors"
    loaded = cls.from_single_file(str(path), config=str(teacher), subfolder="transformer", torch_dtype=torch.float32)
    got = loaded.state_dict()
    equal = got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in want)
    return {"file_gib": round(path.stat().st_size / 2**30, 3), "tensors": len(want), "equal_to_student": equal}


def _versions() -> dict:
    """The versions of the libraries the chain runs on (the lent machine's image, with diffusers carried in)."""
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for name in ("diffusers", "transformers", "peft", "accelerate", "huggingface_hub", "safetensors"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = None
    return found


def _resolved(run: Path) -> str:
    import yaml

    return yaml.safe_load((run / "config.yaml").read_text())["grad_checkpointing_resolved"]


def _count(n: int) -> str:
    return f"{n / 1e9:.2f} B" if n >= 1e8 else f"{n / 1e6:.2f} M"


def table(paths: list[str]) -> str:
    """The per-stage markdown table of rehearsal JSONs (docs/scale-out.md), one row per family and stage."""
    lines = [
        "| run | family | stage | seconds | GPU peak (GiB) | host peak so far (GiB) | note |",
        "|---|---|---|---:|---:|---:|---|",
    ]
    for path in paths:
        result = json.loads(Path(path).read_text())
        run = f"{result['device']}, {result['dtype']}"
        for rec in result["runs"]:
            if "size" in rec:
                lines.append(
                    f"| {run} | {rec['family']} | {'x'.join(map(str, rec['size']))}, {rec['teacher_steps']} teacher "
                    f"steps, {_count(rec.get('transformer_params', 0))} transformer parameters | | | | |"
                )
            if "identity_seconds" in rec:
                lines.append(
                    f"| {run} | {rec['family']} | teacher identity of the {rec['teacher_gib']} GiB folder "
                    f"| {rec['identity_seconds']} | | | |"
                )
            for name, e in rec.get("stages", {}).items():
                note = []
                if "grad_checkpointing" in e:
                    note.append(f"checkpointing {e['grad_checkpointing']}")
                if e.get("save_seconds") is not None:
                    note.append(f"last save {e['save_seconds']} s")
                if "video_shape" in e:
                    note.append("video " + "x".join(map(str, e["video_shape"])))
                if "equal_to_student" in e:
                    note.append(f"{e['tensors']} tensors, equal to the student: {e['equal_to_student']}")
                if "skipped" in e:
                    note.append(f"not read back ({e['skipped']})")
                if e.get("running"):
                    note.append("**did not finish**")
                if e.get("failed"):
                    note.append("**failed** (its peaks up to the failure)")
                if "gpu_reserved_peak_gib" in e:
                    note.append(f"reserved {e['gpu_reserved_peak_gib']} GiB")
                cells = [e.get("seconds", ""), e.get("gpu_peak_gib", "-"), e.get("host_peak_gib_so_far", "")]
                lines.append(
                    f"| {run} | {rec.get('family', '?')} | {name} | "
                    + " | ".join(map(str, cells))
                    + f" | {', '.join(note)} |"
                )
            errors = {**({"": rec["error"]} if "error" in rec else {}), **rec.get("errors", {})}
            for who, error in errors.items():
                first = error.splitlines()[0][:120] if error else ""
                lines.append(f"| {run} | {rec.get('family', '?')} | **error** {who} | | | | {first} |")
        lines.append(f"| {run} | all | total | {result.get('total_seconds', '')} | | | |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/rehearsal")
    parser.add_argument("--tiny", action="store_true", help="tiny sizes on the CPU: the same code paths in ~1 minute")
    parser.add_argument(
        "--bf16", action="store_true", help="the GPU's precision on the CPU (bf16 teacher, bf16 autocast)"
    )
    parser.add_argument("--families", default="wan,hunyuanvideo")
    parser.add_argument("--size", default=None, help="FxHxW for every family, in place of the plan's (e.g. 5x64x64)")
    parser.add_argument("--steps", type=int, default=None, help="teacher steps in synthesis, in place of the plan's")
    parser.add_argument(
        "--lora-only", action="store_true", help="skip the full students (a CPU's memory at real width)"
    )
    parser.add_argument(
        "--single-file",
        action="store_true",
        help="also export each student as a single file and load it with from_single_file (not in the GPU run)",
    )
    parser.add_argument("--json", default=None, help="also copy the JSON here (e.g. benchmarks/results/...)")
    parser.add_argument("--table", nargs="+", metavar="JSON", help="print the markdown table of these JSONs and exit")
    a = parser.parse_args()
    if a.table:
        print(table(a.table))
        return
    device = torch.device("cpu" if a.tiny or not torch.cuda.is_available() else "cuda")
    dtype = torch.bfloat16 if device.type == "cuda" or a.bf16 else torch.float32
    size = tuple(int(v) for v in a.size.lower().split("x")) if a.size else None
    if size is not None and len(size) != 3:
        parser.error(f"--size takes FxHxW, e.g. 5x64x64; got {a.size!r}")
    if device.type == "cpu" and not a.tiny and size is None:  # the plan's sizes on a CPU: hours, not minutes
        parser.error("no CUDA GPU here: the real sizes need one; pass --tiny (or --size FxHxW at real width)")
    out = Path(a.out)
    if out.exists():
        shutil.rmtree(out)
    result = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "versions": _versions(),
        "disk_free_gib": round(shutil.disk_usage(out.parent if out.parent.exists() else ".").free / 2**30, 1),
        "dtype": str(dtype).removeprefix("torch."),
        "command": " ".join(["python", *sys.argv]),
        "runs": [],
    }
    out.mkdir(parents=True)
    t0 = time.perf_counter()

    def flush() -> None:
        result["total_seconds"] = round(time.perf_counter() - t0, 1)
        text = json.dumps(result, indent=1) + "\n"
        for path in [out / "rehearsal.json", *([Path(a.json)] if a.json else [])]:
            path.write_text(text)

    failed = False
    for family in a.families.split(","):
        work = out / family
        work.mkdir(parents=True)
        record: dict = {}
        result["runs"].append(record)
        try:
            rehearse(
                family,
                "tiny" if a.tiny else "real",
                work,
                device,
                dtype,
                record,
                flush,
                size,
                a.steps,
                a.lora_only,
                a.single_file,
            )
        except Exception as e:  # record it and go on: one GPU run should measure every family it can
            traceback.print_exc()
            record["error"] = f"{type(e).__name__}: {e}"[:2000]
            record["traceback"] = traceback.format_exc()[-3000:]
        failed = failed or "error" in record or "errors" in record
        flush()
        shutil.rmtree(work, ignore_errors=True)  # free the disk (and the GPU) for the next family
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
    print((out / "rehearsal.json").read_text())
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
