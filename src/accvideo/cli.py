"""The `accvideo` command line: one verb per pipeline stage, every verb configured the same four ways.

    accvideo VERB [--config FILE.yaml] [--preset NAME] [--flag VALUE ...] [key=value ...]

Flags are generated from the verb's config dataclass (core/config.py); precedence is defaults < preset < YAML <
flags < key=value; no value is passed unless the user gave it; unknown keys are refused with one line; each stage
writes its resolved settings beside its output. Bad input exits 2 with one line.
"""

from __future__ import annotations

import argparse
import codecs
import dataclasses
import difflib
import errno
import hashlib
import logging
import os
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import import_module
from pathlib import Path

from accvideo import __version__
from accvideo.core.files import size_text
from accvideo.core.interrupts import catch_interrupts, exit_code, signal_name
from accvideo.core.interrupts import check as check_interrupt
from accvideo.core.launcher import LAUNCHER_GONE, launcher_gone_line, watch_launcher
from accvideo.core.streams import guarded_streams
from accvideo.errors import AccVideoError


@dataclass(frozen=True)
class Verb:
    """A command: its config class and presets (as 'module:name' so `--help` imports nothing heavy) and its run."""

    name: str
    help: str
    config: str  # 'module:ConfigClass'
    run: Callable[[object], None]
    presets: dict[str, str] = dataclasses.field(default_factory=dict)  # name -> 'module:function' returning a config
    positional: tuple[str, ...] = ()  # fields also given as bare arguments, in order

    def preset_refs(self) -> dict[str, str]:
        """Every verb has presets; without named ones, 'default' is the config's own defaults."""
        return self.presets or {"default": self.config}


def _load(ref: str):
    module, name = ref.split(":")
    return getattr(import_module(module), name)


def _echo(text: str = "", err: bool = False) -> None:
    print(text, file=sys.stderr if err else sys.stdout, flush=True)


# --- what each verb runs and prints -----------------------------------------------------------------------------


def _prompts(cfg) -> None:
    from accvideo.core.outputs import claim_file, record_file, vouch
    from accvideo.synthesize.prompts import write_prompts
    from accvideo.world import prompts as world_prompts

    if cfg.split != "train" and str(cfg.out).lower().endswith(".txt"):  # a .txt keeps captions, not seeds
        raise AccVideoError(
            f"--out {cfg.out}: a .txt keeps no seeds, so {cfg.split} rows would be sampled from the train split's "
            f"item seeds (the noises a student trains on); write --out {str(cfg.out)[:-4]}.jsonl"
        )
    claim_file(cfg.out, "prompts")
    items = world_prompts(cfg.n, cfg.split, cfg.seed)
    record_file(write_prompts(cfg.out, items, before_replace=vouch(cfg.out, "prompts")), "prompts")
    _echo(f"wrote {len(items)} {cfg.split} prompts to {cfg.out}")


def _synthesize(cfg) -> None:
    from accvideo.synthesize.run import synthesize

    s = synthesize(cfg)
    if s["rank"] == 0:
        blanks = f"; skipped {s['blank_lines']} blank line(s)" if s["blank_lines"] else ""
        if s["shards_given_videos"]:  # --videos added to a finished dataset: decoded, not sampled again
            blanks += f"; decoded the videos of {s['shards_given_videos']} kept shard(s) from their latents"
        _echo(
            f"{s['out']}: synthesized {s['items_written']} item(s) in {s['shards_written']} shard(s), kept "
            f"{s['shards_skipped']} complete shard(s) (rank 0 of {s['world_size']}; {s['items']} items in "
            f"{s['shards']} shards in all; teacher {s['teacher'][:19]}...){blanks}"
        )


def _distill(cfg) -> None:
    from accvideo.distill import distill
    from accvideo.distill.state import check_output

    check_output(cfg)  # before the teacher and the dataset are loaded
    s = distill(cfg)
    if s["rank"] == 0:  # under torchrun, rank 0 reports for all
        _echo(
            f"{_did(s)} the {s['key_steps']}-step student {_at(s)} {s['student']} "
            f"({_count(s['iterations'], 'iteration')}, {_count(s['samples'], 'sample')}; losses in "
            f"{Path(s['out']) / 'losses.jsonl'}, losses.png){_finished(s)}"
        )


def _did(summary: dict) -> str:  # a finished run rerun trains nothing and writes nothing: it keeps what it has
    return "kept" if summary.get("kept") else "wrote"


def _at(summary: dict) -> str:
    return "in" if summary.get("kept") else "to"


def _finished(summary: dict) -> str:
    return "; it had finished: raise iterations= to train on" if summary.get("kept") else ""


def _count(n: int, noun: str) -> str:
    """'1 iteration', '3 iterations'."""
    return f"{n} {noun}{'s' * (n != 1)}"


def _decoder_distill(cfg) -> None:
    from accvideo.decoder import check_output, distill_decoder

    check_output(cfg)  # before the teacher and the dataset are loaded
    s = distill_decoder(cfg)
    psnr = s["heldout_psnr_db"]
    scored = f"held-out PSNR {psnr} dB against the VAE" if psnr is not None else "no held-out clips (holdout=0)"
    _echo(
        f"{_did(s)} the tiny decoder {_at(s)} {s['decoder']} ({s['parameters']:,} parameters, "
        f"{_count(s['iterations'], 'iteration')}; {scored}; {s['seconds']:.0f} s; losses.png, summary.json)"
        f"{_finished(s)}"
    )


def _sample(cfg) -> None:
    from accvideo.sample.run import sample

    if not cfg.prompts and _under_torchrun():
        raise AccVideoError(single_process_line("sample --prompt"))
    r = sample(cfg)
    if "clips" in r:  # --prompts: a folder of clips (under torchrun rank 0 reports for all)
        if r["rank"] != 0:
            return
        kept = f", {r['kept']} kept from an earlier run" if r["kept"] else ""
        clips = f"{r['sampled']} clip{'' if r['sampled'] == 1 else 's'}"
        _echo(
            f"wrote {clips} to {r['out']} ({r['clips']} listed in manifest.jsonl{kept}; "
            f"{r['resolved_steps']} steps, guidance {r['resolved_guidance']:g}, {r['seconds_generate']:.1f} s)"
        )
        return
    _echo(
        f"wrote {', '.join(r['outputs'])} ({r['resolved_steps']} steps, guidance {r['resolved_guidance']:g}, "
        f"shift {r['resolved_shift']:g}, {r['seconds_generate']:.1f} s)"
    )


def _export(cfg) -> None:
    from accvideo.export import export_run

    m = export_run(Path(cfg.run), cfg.format, Path(cfg.out), force=cfg.force, dtype=cfg.dtype, decoder=cfg.decoder)
    call = ", ".join(f"{k}={v!r}" for k, v in {**m.get("size", {}), **m["call"]}.items() if k != "prompt_template")
    if "prompt_template" in m["call"]:  # long: its value is in the export's README.md and accvideo_export.json
        call += ", prompt_template=(the export's README.md)"
    how = f"load it with {m['pipeline']} and call it with {call}"
    if m["scheduler"] is None:  # non-uniform key steps: no stock schedule reaches them from a step count
        how = "no stock scheduler reaches its key sigmas: pass them as sigmas= (README.md), or use accvideo sample"
    _echo(f"wrote a {len(m['key_sigmas']) - 1}-step {_student_kind(m)} student ({cfg.format}) to {m['out']}; {how}")


def _student_kind(manifest: dict) -> str:
    """The exported student's family as the last line names it: Wan 2.1 image-to-video and Wan 2.2 A14B students
    share the family 'wan' with Wan 2.1 text-to-video ones, so they are said apart."""
    if manifest.get("experts"):
        return f"{manifest['family']} two-expert (Wan 2.2 A14B)"
    if manifest["pipeline"] == "WanImageToVideoPipeline":
        return f"{manifest['family']} image-to-video"
    return manifest["family"]


def _evaluate(cfg) -> None:
    import warnings

    from accvideo.evaluate.report import metrics_table
    from accvideo.evaluate.run import run_evaluate
    from accvideo.world import PromptWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PromptWarning)  # reported below, one line each
        metrics = run_evaluate(cfg)
    for w in metrics["warnings"]:
        _echo(f"warning: {w}", err=True)
    _echo(metrics_table(metrics))
    _echo(f"wrote {Path(cfg.out) / 'metrics.json'} and {Path(cfg.out) / 'metrics.md'}")


def _bench(cfg) -> None:
    from accvideo.bench import bench_markdown, run_bench

    report = run_bench(cfg)
    _echo(bench_markdown(report))
    _echo(f"wrote {Path(cfg.out) / 'bench.json'} and {Path(cfg.out) / 'bench.md'}")


def _demo(cfg) -> None:
    from accvideo.demo import run_demo

    run_demo(cfg, echo=_echo)


def _ablate(cfg) -> None:
    from accvideo.demo import run_ablation

    run_ablation(cfg, echo=_echo)


def _teacher_train(cfg) -> None:
    import torch

    from accvideo.core.outputs import FolderLock, check_folder, claim_folder
    from accvideo.core.runtime import resolve_device
    from accvideo.teacher.train import (
        COMMAND,
        check_work_folder,
        finished_teacher,
        init_folder,
        is_teacher_output,
        is_work_folder,
        train_teacher,
        work_fix,
    )

    init_folder(cfg)  # a bad init= is one line before any folder is made
    device = resolve_device(cfg.device)  # so is a device this machine lacks
    out = Path(cfg.out).expanduser()
    work = Path(cfg.work).expanduser() if cfg.work else out.with_name(f"{out.name}.work")
    # both checked before either is made: a bad work= left a new --out behind
    check_folder(out, COMMAND, inputs={"work": work}, legacy=is_teacher_output)
    if work.is_dir() and ((work / "model_index.json").is_file() or is_teacher_output(work)):
        raise AccVideoError(
            f"work= {work} is a teacher pipeline, not a work folder (it was trained into); choose another work="
        )
    check_folder(work, COMMAND, inputs={"out": out}, legacy=is_work_folder, flag="work=")
    check_work_folder(cfg.teacher(), work, work_fix(cfg.work))  # its state of other settings: before --out is made
    made = not out.exists()
    claim_folder(out, COMMAND, inputs={"work": work}, legacy=is_teacher_output)
    try:
        claim_folder(work, COMMAND, inputs={"out": out}, legacy=is_work_folder, flag="work=")
    except AccVideoError:
        if made:  # still only the marker this call wrote
            shutil.rmtree(out, ignore_errors=True)
        raise
    with FolderLock(work, COMMAND):  # one writer at a time: two would interleave their checkpoints in `work`
        if (done := finished_teacher(cfg.teacher(), out)) is not None:
            _echo(f"{out} is already trained with these settings; nothing to do (delete it to train again): {done}")
            return
        if cfg.threads > 0:
            torch.set_num_threads(cfg.threads)
        stats = train_teacher(cfg.teacher(), out, work if cfg.work else None, device)  # None: OUT.work
    _echo(f"wrote the teacher to {out}: {stats}")


def _world_train_classifier(cfg) -> None:
    from accvideo.core.outputs import claim_folder
    from accvideo.evaluate.train import train_classifier

    claim_folder(cfg.out, "world-train-classifier")
    info = train_classifier(cfg)
    acc = ", ".join(f"{k} {v:.3f}" for k, v in info["heldout_accuracy"].items())
    _echo(f"wrote {cfg.out} ({info['train_seconds']:.0f} s; held-out accuracy: {acc or 'not measured'})")


def _toy1d(cfg) -> None:
    import torch

    from accvideo.core.outputs import claim_folder
    from accvideo.toy1d import run_toy1d, summary_table, write_results

    out = claim_folder(cfg.out, "toy1d")
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    result = run_toy1d(cfg.experiment(), seed=cfg.seed)
    paths = write_results(result, out)
    _echo(summary_table(result.numbers))
    _echo(f"wrote {paths[0]} and {len(paths) - 1} PNGs to {cfg.out}")


def _tiny_model(cfg) -> None:
    from accvideo.core.files import write_json_atomic
    from accvideo.core.inputs import read_json
    from accvideo.core.outputs import FolderLock, claim_folder
    from accvideo.models.tiny import TINY_FAMILIES

    out = claim_folder(cfg.out, "tiny-model")
    name, save = TINY_FAMILIES[cfg.family]
    made = {"family": cfg.family, "seed": cfg.seed, "layers": cfg.layers}
    record = out / ".accvideo-tiny.json"  # hidden: not part of the model's identity
    with FolderLock(out, "tiny-model"):  # two at once both wrote, and one model's files replaced the other's
        if record.is_file() and (out / "model_index.json").is_file():
            before = read_json(record, "delete the folder to write it again")
            if before == made:
                _echo(f"{out} already holds this tiny random {name} pipeline; nothing to do")
                return
            # another model here would change the teacher identity its datasets and students recorded
            was = ", ".join(f"{k}={v}" for k, v in before.items()) if isinstance(before, dict) else "other settings"
            raise AccVideoError(f"{out} holds a tiny model of {was}; use another --out, or delete it to replace it")
        save(out, cfg.seed, cfg.layers)
        write_json_atomic(record, made)
    _echo(f"wrote a tiny random {name} pipeline to {out}")


# In pipeline order: data, the method's stages, use, evaluation; then the recipes and the tools.
VERBS = [
    Verb(
        "prompts",
        "Write N captions of the built-in world (for synthesize --prompts).",
        "accvideo.synthesize.prompts:PromptsConfig",
        _prompts,
    ),
    Verb(
        "synthesize",
        "SynVid: teacher trajectories -> resumable shards (torchrun splits items).",
        "accvideo.synthesize.config:SynthConfig",
        _synthesize,
    ),
    Verb(
        "distill",
        "Distil a few-step student from SynVid (L_traj + adversarial heads); rerun to resume.",
        "accvideo.distill.config:DistillConfig",
        _distill,
        {
            "default": "accvideo.distill.config:DistillConfig",
            "paper": "accvideo.distill.config:paper_config",
            "quick": "accvideo.distill.config:quick_config",
        },
    ),
    Verb(
        "decoder distill",
        "A tiny decoder trained on the teacher VAE's decodes of SynVid latents (use it with --decoder).",
        "accvideo.decoder.config:DecoderDistillConfig",
        _decoder_distill,
    ),
    Verb(
        "sample",
        "Generate one clip, or one a row of --prompts FILE (a distill run samples on its key sigmas without CFG).",
        "accvideo.sample.config:SampleConfig",
        _sample,
    ),
    Verb(
        "export",
        "Export a student that stock diffusers loads (scheduler on the key sigmas) or a LoRA file.",
        "accvideo.export.config:ExportConfig",
        _export,
        positional=("run",),
    ),
    Verb(
        "evaluate",
        "ToyBench: attribute accuracy, Frechet distance, temporal consistency of a model or clips.",
        "accvideo.evaluate.config:EvaluateConfig",
        _evaluate,
    ),
    Verb(
        "bench",
        "Time per stage (text encoding, transformer steps, VAE decode) of teacher and student.",
        "accvideo.bench.run:BenchConfig",
        _bench,
    ),
    Verb(
        "demo",
        "The whole chain on the built-in model: prompts, synthesize, distill, sample, evaluate, report.",
        "accvideo.demo.config:ChainConfig",
        _demo,
        {"default": "accvideo.demo.config:ChainConfig", "quick": "accvideo.demo.config:quick_config"},
    ),
    Verb(
        "ablate",
        "The paper's ablation on ToyBench for several m and training seeds, with 95% intervals.",
        "accvideo.demo.config:AblationConfig",
        _ablate,
        {"default": "accvideo.demo.config:ablation_config", "quick": "accvideo.demo.config:quick_ablation_config"},
    ),
    Verb(
        "teacher train",
        "Train the built-in teacher (a tiny Wan 2.1), or fine-tune one (init=, image=true: image-to-video); rerun "
        "to resume.",
        "accvideo.teacher.config:TeacherTrainConfig",
        _teacher_train,
        {"default": "accvideo.teacher.config:TeacherTrainConfig", "quick": "accvideo.teacher.config:quick_train"},
    ),
    Verb(
        "world-train-classifier",
        "Retrain ToyBench's classifier on the world's train combinations.",
        "accvideo.evaluate.train:ClassifierTrainConfig",
        _world_train_classifier,
    ),
    Verb(
        "toy1d",
        "The paper's 1D experiment (Figure 2): plots and JSON.",
        "accvideo.toy1d.config:Toy1dRunConfig",
        _toy1d,
        {"full": "accvideo.toy1d.config:full_run", "quick": "accvideo.toy1d.config:quick_run"},
    ),
    Verb(
        "tiny-model",
        "Write a tiny random Wan 2.1 (text- or image-to-video) or HunyuanVideo pipeline (diffusers format) for smoke "
        "runs.",
        "accvideo.models.tiny:TinyModelConfig",
        _tiny_model,
        positional=("out",),
    ),
]
BY_NAME = {v.name: v for v in VERBS}
GROUPS: dict[str, list[Verb]] = {}
for _verb in VERBS:
    if " " in _verb.name:
        GROUPS.setdefault(_verb.name.split()[0], []).append(_verb)


# --- parsing ----------------------------------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse's usage + message + exit 2 becomes our one line
        raise AccVideoError(f"{message}{self._near_miss(message)}; see {self.prog} --help")

    def _near_miss(self, message: str) -> str:
        """'; did you mean --steps?' for the first unknown --flag in argparse's message that is close to a known one."""
        known = [o for o in self._option_string_actions if o.startswith("--")]
        for word in re.findall(r"--[\w-]+", message.partition("arguments:")[2]):
            close = difflib.get_close_matches(word.lower(), known, n=1)
            if close:
                return f" (did you mean {close[0]}?)"
        return ""


def _preset_defaults(verb: Verb) -> dict | None:
    """The default preset's values (dotted keys) when it is a function, shown in --help; None: the fields' own."""
    from accvideo.core.config import to_dict

    ref = next(iter(verb.preset_refs().values()))
    if ref == verb.config:
        return None
    try:
        return _dotted_values(to_dict(_load(ref)()))
    except Exception:  # noqa: BLE001 - a preset that cannot be built alone: the fields' own defaults
        return None


def _dotted_values(tree: dict, prefix: str = "") -> dict:
    flat = {}
    for k, v in tree.items():
        if isinstance(v, dict):
            flat.update(_dotted_values(v, f"{prefix}{k}."))
        else:
            flat[f"{prefix}{k}"] = v
    return flat


def _verb_parser(verb: Verb, cls) -> tuple[_Parser, dict[str, str]]:
    from accvideo.core.config import config_flags

    parser = _Parser(
        prog=f"accvideo {verb.name}",
        description=verb.help,
        add_help=True,
        allow_abbrev=False,
        epilog="Any setting also as key=value (nested: runtime.offload=true). Precedence: defaults < "
        "--preset < --config < flags < key=value. [x]: the value used when not given.",
    )
    parser.add_argument(
        "args",
        nargs="*",
        metavar="key=value",
        help=" ".join(f"{p.upper()}" for p in verb.positional) + " then key=value settings"
        if verb.positional
        else "key=value settings",
    )
    parser.add_argument("--config", dest="__config", metavar="FILE.yaml", help="YAML with any of these settings")
    presets = verb.preset_refs()
    parser.add_argument(
        "--preset",
        dest="__preset",
        metavar="NAME",
        help=f"start from a preset: {', '.join(presets)} [{next(iter(presets))}]",
    )
    keys: dict[str, str] = {}
    flags = config_flags(cls, _preset_defaults(verb))
    names = {f.key for f in flags}
    for f in flags:
        dest = f"flag:{f.key}"
        keys[dest] = f.key
        help_text = f.help.replace("%", "%%")
        if f.parse is None:
            parser.add_argument(
                f.option, dest=dest, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS, help=help_text
            )
        else:
            parser.add_argument(
                f.option,
                dest=dest,
                type=f.parse,
                default=argparse.SUPPRESS,
                help=help_text,
                metavar=f.key.rsplit(".", 1)[-1].upper(),
            )
    if {"height", "width"} <= names and "size" not in names:
        parser.add_argument(
            "--size", dest="__size", metavar="HxW", help="height and width (HxWxF also sets frames), e.g. 480x832"
        )
    return parser, keys


SETTING = re.compile(r"[A-Za-z_][\w.]*=")  # the start of a key=value setting (keys may be dotted: runtime.offload=)


def resolve(verb: Verb, argv: list[str]):
    """The verb's config from its command line: defaults < preset < YAML < flags < key=value."""
    from accvideo.core.config import load_config, parse_size_flag

    cls = _load(verb.config)
    parser, keys = _verb_parser(verb, cls)
    ns = vars(parser.parse_intermixed_args(argv))
    values = {keys[d]: v for d, v in ns.items() if d in keys}
    if ns.get("__size") is not None:
        size = parse_size_flag(ns["__size"])
        if "frames" in size and "frames" not in {f.name for f in dataclasses.fields(cls)}:
            raise AccVideoError(f"--size takes HxW here; got {ns['__size']!r}")
        clash = [k for k in size if values.get(k) is not None and values[k] != size[k]]
        if clash:  # `--size 32x32x5 --frames 9` ran 9 frames, silently
            raise AccVideoError(
                f"--size {ns['__size']} gives {clash[0]} {size[clash[0]]} and --{clash[0]} gives {values[clash[0]]}; "
                "give it once"
            )
        values = {**size, **values}
    # key=value where the key could be a setting's name; any other word (a path holding '=': /data/run=1) is an
    # argument, not an unknown setting named '/data/run'
    overrides = [a for a in ns["args"] if SETTING.match(a)]
    bare = [a for a in ns["args"] if not SETTING.match(a)]
    if len(bare) > len(verb.positional):
        extra = bare[len(verb.positional)]
        raise AccVideoError(
            f"unexpected argument {extra!r}; settings are --flag VALUE or key=value (see accvideo {verb.name} --help)"
        )
    for name, given in zip(verb.positional, bare, strict=False):
        other = [o.split("=", 1)[1] for o in overrides if o.split("=", 1)[0] == name] + [values.get(name)]
        other = [str(v) for v in other if v is not None and str(v) != given]
        if other:  # `export RUN --run OTHER`: which one was meant is not ours to guess
            raise AccVideoError(
                f"{name.upper()} given twice: {given!r} as an argument and {other[0]!r} as --{name.replace('_', '-')} "
                f"(or {name}=); give it once"
            )
        values[name] = given
    preset, presets = ns.get("__preset"), verb.preset_refs()
    if preset is not None and preset not in presets:
        raise AccVideoError(f"--preset must be one of {', '.join(presets)}; got {preset!r}")
    ref = presets[preset or next(iter(presets))]
    base = None if ref == verb.config else _load(ref)()  # the class itself: its defaults, validated after merging
    return load_config(cls, ns.get("__config"), overrides, base=base, **values)


def run_verb(verb: Verb, argv: list[str]) -> None:
    cfg = resolve(verb, argv)
    _check_utf8_paths(verb, cfg)
    verb.run(cfg)


# settings naming folders read through safetensors, and the verbs whose --out holds safetensors files
_TENSOR_INPUTS = ("teacher", "model", "data", "run", "classifier", "init")
_TENSOR_OUTPUTS = (
    "synthesize",
    "distill",
    "decoder distill",
    "export",
    "tiny-model",
    "teacher train",
    "demo",
    "ablate",
)


def _check_utf8_paths(verb: Verb, cfg) -> None:
    """Refuse a model, data or run folder whose path holds bytes that are no UTF-8 (held as surrogates): safetensors
    opens only UTF-8 paths, so `synthesize --out` of one wrote a SynVid that nothing could read, `sample` of such a run
    said to rerun its distill command, and `export --format single-file` was a traceback. Clips and prompt lists
    (written by ffmpeg and Python) take any name."""
    names = [*_TENSOR_INPUTS, *(("out",) if verb.name in _TENSOR_OUTPUTS else ())]
    given = [(n, getattr(cfg, n, None)) for n in names] + [
        ("decoder", getattr(getattr(cfg, "runtime", None), "decoder", None))
    ]
    for name, value in given:
        if not isinstance(value, str) or value.isascii():
            continue
        try:
            raw = value.encode("utf-8", "surrogateescape")  # the bytes given
        except UnicodeEncodeError:  # a surrogate no byte makes (a YAML escape): as UTF-8 would hold it, invalid
            raw = value.encode("utf-8", "surrogatepass")
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise AccVideoError(
                f"--{name.replace('_', '-')} {value!r} is not UTF-8 (byte 0x{raw[exc.start]:02x} at column "
                f"{exc.start + 1}), and safetensors opens only UTF-8 paths; rename it (or choose a UTF-8 name)"
            ) from None


def _root_help() -> str:
    width = max(len(v.name) for v in VERBS)
    lines = [
        "usage: accvideo VERB [--config FILE.yaml] [--preset NAME] [--flag VALUE ...] [key=value ...]",
        "",
        "accvideo: distil flow-matching video diffusion models into few-step students (AccVideo).",
        "",
        "verbs, in pipeline order:",
        *(f"  {v.name.ljust(width)}  {v.help}" for v in VERBS),
        "",
        "accvideo VERB --help lists a verb's settings; accvideo --version prints the version.",
    ]
    return "\n".join(lines)


def dispatch(argv: list[str]) -> None:
    if not argv or argv[0] in ("-h", "--help"):
        _echo(_root_help())
        return
    if argv[0] == "--version":
        _echo(f"accvideo {__version__}")
        return
    name = argv[0]
    if name in GROUPS:  # two-word verbs: `accvideo teacher train`, `accvideo decoder distill`
        if len(argv) < 2 or argv[1] in ("-h", "--help"):
            _echo(
                "\n\n".join(
                    f"usage: accvideo {v.name} [--flag VALUE ...] [key=value ...]\n{v.help}" for v in GROUPS[name]
                )
            )
            return
        name, argv = f"{name} {argv[1]}", argv[1:]
    if name not in BY_NAME:
        close = ["--help"] if name == "help" else difflib.get_close_matches(name, list(BY_NAME), n=1)
        hint = f"did you mean `accvideo {close[0]}`? " if close else ""
        raise AccVideoError(f"unknown command {name!r}; {hint}one of: {', '.join(BY_NAME)} (accvideo --help)")
    if _under_torchrun() and name not in TORCHRUN_VERBS:  # WORLD_SIZE checked for every verb
        raise AccVideoError(single_process_line(name))
    run_verb(BY_NAME[name], argv[1:])


# the verbs that split their work across torchrun's processes; every other one ran whole on each rank, writing the
# same files at once (evaluate, export), or refused its sibling rank as another writer (sample of one clip)
TORCHRUN_VERBS = ("synthesize", "distill", "sample")


def _under_torchrun() -> bool:
    """WORLD_SIZE > 1, read without importing torch (core/dist.py does); one line for a value that is no count."""
    from accvideo.core.inputs import env_int  # torch-free, as core/dist.py (which also reads it) is not

    return env_int("WORLD_SIZE", "1", 1, "a number of processes") > 1


def single_process_line(name: str) -> str:
    return (
        f"`accvideo {name}` runs in one process; run it without torchrun (torchrun splits synthesize, distill and "
        "sample --prompts)"
    )


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
    except OSError as exc:  # torch makes its kernel cache folder as diffusers imports it
        cache, failed = os.environ.get("TORCHINDUCTOR_CACHE_DIR"), str(exc.filename or "")
        # the cache, a file inside it, or a folder above it that is missing (makedirs names the first it cannot make)
        related = bool(cache and failed) and (
            Path(failed) == Path(cache) or Path(cache) in Path(failed).parents or Path(failed) in Path(cache).parents
        )
        if not (related or "torchinductor_" in failed):
            raise  # another file: the fault handler's line, or the error as it is
        where = f"TORCHINDUCTOR_CACHE_DIR={cache}" if cache else "torch's kernel cache (/tmp/torchinductor_$USER)"
        raise AccVideoError(
            f"cannot make {where} ({exc.strerror or exc}: {exc.filename}); set TORCHINDUCTOR_CACHE_DIR to a folder "
            "you can write (docs/sample.md, run-time options)"
        ) from None
    # diffusers logs a missing weights file as an error and then raises; the raise becomes our one line
    logging.getLogger("diffusers.models.modeling_utils").addFilter(
        lambda record: not record.getMessage().startswith("An error occurred while trying to fetch")
    )
    warnings.filterwarnings("ignore", category=FutureWarning)
    # our own warnings (e.g. prompt words the built-in model never saw) as one line each
    warnings.formatwarning = lambda message, category, *args, **kw: f"warning: {message}\n"


_PEER_GONE = re.compile(r"Connection (closed|reset) by peer")  # gloo (and NCCL's TCP store) when a rank is gone
_DISK_FULL = {errno.ENOSPC, errno.EDQUOT}
_NO_ACCESS = {errno.EACCES, errno.EPERM, errno.EROFS}
_ERRNO_IN_TEXT = re.compile(r"\[Errno (\d+)\]|os error (\d+)|code: (\d+)")  # Python's, Rust's (safetensors)
_OOM_TEXT = ("can't allocate memory", "could not create a primitive")  # torch's allocator; oneDNN's (ulimit -v)


def as_os_error(exc: BaseException) -> BaseException:
    """The OSError inside a library's own wrapper of a failed write: safetensors' SafetensorError ("... os error
    28 ..."), shutil.Error (a copytree's list of failures), an ELOOP RuntimeError of Path.resolve (Python 3.11's
    "Symlink loop from ..."); `exc` itself otherwise."""
    if isinstance(exc, OSError) and type(exc).__name__ != "Error":  # shutil.Error is an OSError without an errno
        return exc
    text = str(exc)
    if isinstance(exc, RuntimeError) and text.startswith("Symlink loop from "):
        return OSError(errno.ELOOP, os.strerror(errno.ELOOP), text.removeprefix("Symlink loop from ").strip("'\""))
    if type(exc).__name__ in {"SafetensorError", "Error"}:  # shutil.Error's args: [(src, dst, "why"), ...]
        found = _ERRNO_IN_TEXT.search(text)
        if found:
            code = int(next(g for g in found.groups() if g))
            failures = exc.args[0] if exc.args and isinstance(exc.args[0], list) else []
            where = failures[0][1] if failures and len(failures[0]) == 3 else None
            return OSError(code, os.strerror(code), where)
    return exc


# what each verb can change when it runs out of memory, (on a GPU, on the CPU): only its own flags and settings
# (tests/test_cli.py resolves each for its verb); other verbs get MEMORY_FIXES_ELSE
_SAMPLE_GPU = "--offload (text encoders and VAE on the CPU), --vae-tiling on, --dtype bfloat16"
_SAMPLE_CPU = "--dtype bfloat16, --vae-tiling on"
_DISTILL = "grad_checkpointing=on, micro_batch=1, a LoRA student (lora_rank=64)"
_DEMO = "a smaller --batch, --synth-batch or --eval-batch"
_DECODER = "a smaller --batch, --crop 64 (random crops of the latents) or a smaller --frame-pairs"
_TEACHER = "a smaller --batch, --vae-batch or --vae-image-batch"
MEMORY_FIXES = {
    "synthesize": (f"{_SAMPLE_GPU}, --batch 1, or a smaller --size or --frames", f"{_SAMPLE_CPU}, --batch 1"),
    "sample": (f"{_SAMPLE_GPU}, --batch 1, or a smaller --size or --frames", f"{_SAMPLE_CPU}, --batch 1"),
    "evaluate": (f"{_SAMPLE_GPU}, or --batch-size 1", f"{_SAMPLE_CPU}, --batch-size 1"),
    "bench": (f"{_SAMPLE_GPU}, or a smaller --size or --frames", _SAMPLE_CPU),
    "demo": (f"{_DEMO}, or --device cpu", _DEMO),
    "ablate": (f"{_DEMO}, or --device cpu", _DEMO),
    "distill": (
        f"{_DISTILL}, or more GPUs (torchrun, parallel=fsdp); a run stopped before its first checkpoint takes new "
        "settings in the same --out",
        _DISTILL,
    ),
    "decoder distill": (_DECODER, _DECODER),
    "teacher train": (f"{_TEACHER}, or --device cpu", _TEACHER),
}
MEMORY_FIXES_ELSE = ("bfloat16 weights, offloading, VAE tiling or a smaller size", "smaller sizes")


def fault_line(exc: BaseException, verb: str | None = None) -> str | None:
    """One line for a fault of the machine (full disk, no permission, out of memory), or None for anything else.

    Writers keep nothing half-written (temporary names, then a rename), so every line ends in how to go on. `verb`
    (e.g. "distill") picks the settings an out-of-memory line names.
    """
    if type(exc).__name__ == "OutOfMemoryError":  # torch's, on a GPU
        fixes = MEMORY_FIXES.get(verb or "", MEMORY_FIXES_ELSE)[0]
        return f"out of GPU memory ({str(exc).splitlines()[0][:120]}); try {fixes}"
    exc = as_os_error(exc)
    text = str(exc)
    if isinstance(exc, RecursionError) and "decoding a JSON" in text:  # a library's own read (ours: parse_json)
        return "a JSON file this command reads nests too deeply to be read (thousands of brackets); fix or replace it"
    if isinstance(exc, RuntimeError) and "Storage size calculation overflowed" in text:  # torch, on absurd sizes
        return (
            "a tensor these settings ask for is too large to exist (its size overflows 64 bits); use a smaller "
            "--batch, --size, --frames or head_channels"
        )
    if isinstance(exc, MemoryError) or (isinstance(exc, RuntimeError) and any(t in text for t in _OOM_TEXT)):
        asked = re.search(r"allocate (\d+) bytes", text)
        need = f"; it asked for {size_text(int(asked[1]))} more" if asked else ""
        fixes = MEMORY_FIXES.get(verb or "", MEMORY_FIXES_ELSE)[1]
        return f"out of memory (CPU RAM{need}); try {fixes}, or a machine with more memory; then rerun the command"
    if "RANK" in os.environ and isinstance(exc, RuntimeError) and _PEER_GONE.search(text):
        # under torchrun: another rank stopped (its own one line is above) while this one waited in a collective
        return (
            "another process of this launch stopped first: if it printed a line above, fix what it says; if it printed "
            "none it was killed from outside (the out-of-memory killer, a scheduler): what was saved is kept, rerun "
            "the same command to resume"
        )
    if isinstance(exc, OSError) and exc.errno is not None and (line := _system_limit_line(exc)):
        return line
    if isinstance(exc, OSError) and exc.errno == errno.EISDIR:  # a folder where an output file is written
        target = exc.filename2 or exc.filename  # os.replace(tmp, path): the path is the second name
        return f"{target} is a folder where this command writes a file; remove or rename it, or choose another --out"
    if isinstance(exc, OSError) and exc.errno in _DISK_FULL | _NO_ACCESS | {errno.EIO}:
        where = f" writing {exc.filename}" if exc.filename else ""
        if exc.errno in _NO_ACCESS:  # reading or writing: name the file, not the direction
            at = f": {exc.filename}" if exc.filename else ""
            return f"{exc.strerror or 'permission denied'}{at}; fix its permissions or choose another path"
        if exc.errno == errno.EIO:
            return f"input/output error{where}; check the disk or choose another --out, then rerun the same command"
        needed = getattr(exc, "needed", None)
        free = getattr(exc, "free", None)
        size = f" (about {size_text(needed)} needed, {size_text(free)} free)" if needed and free is not None else ""
        return (
            f"no space left on the device{where}{size}; nothing half-written was kept: free some space or choose "
            "an --out on another disk, then rerun the same command to resume"
        )
    return None


def _system_limit_line(exc: OSError) -> str | None:
    """One line for a limit of the system rather than of the disk's space: the file-size limit, open files, a name
    too long, a symbolic-link loop, a folder removed while the command wrote into it."""
    at = f" {exc.filename}" if exc.filename else ""
    if exc.errno == errno.EFBIG:
        return (
            f"file too large{at}: over the file-size limit (ulimit -f) or this file system's largest file; nothing "
            "half-written was kept: raise the limit or choose an --out on another file system, then rerun the same "
            "command to resume"
        )
    if exc.errno in (errno.EMFILE, errno.ENFILE):
        return "too many open files (ulimit -n); raise the limit (e.g. ulimit -n 1024), then rerun the same command"
    if exc.errno == errno.ENAMETOOLONG:
        return f"file name too long{at} (accvideo adds a temporary suffix while it writes); choose a shorter --out"
    if exc.errno == errno.ELOOP:
        return f"{exc.filename or 'a path'} is a symbolic-link loop; remove the link or choose another path"
    if exc.errno == errno.ENOENT and exc.filename and not Path(exc.filename).parent.exists():
        return (
            f"the folder of {exc.filename} disappeared while the command ran (deleted or unmounted); rerun the "
            "same command to start over"
        )
    return None


ERROR_MARKER = "accvideo-error-"
# the ranks of one launch meet its error within seconds of each other; a marker older than this is an earlier
# launch's (a fixed --rdzv-id such as $SLURM_JOB_ID reused by the next srun step: its line was hidden for an hour)
MARKER_WINDOW_S = 60.0


def _remove_stale_markers(folder: Path, max_age_s: float = MARKER_WINDOW_S) -> None:
    now = time.time()
    for old in folder.glob(f"{ERROR_MARKER}*"):
        try:
            if now - old.stat().st_mtime > max_age_s:
                old.unlink()
        except OSError:  # another rank removed it first, or it is not ours to remove
            pass


def _first_on_this_node(line: str) -> bool:
    """Under torchrun every rank meets the same bad input: print each error line once per node, not once per rank.

    The first rank to create a marker named by the launch (run id, port, launcher process, restart) and the line
    prints it; a line only some ranks
    meet (one rank's out-of-memory) is still printed. Markers older than MARKER_WINDOW_S (the ranks of one launch meet
    its error within seconds of each other) are removed as a new one is made, so a launch that reuses a fixed run id
    prints its line again. Outside torchrun every line prints."""
    run_id = os.environ.get("TORCHELASTIC_RUN_ID")
    if run_id is None or "RANK" not in os.environ:
        return True
    # a static rendezvous (--master_port, one launch after another) has the run id "none" every time: there the
    # launcher's process (the parent of a node's ranks) and its restart count tell one launch from the next
    launch = f"{run_id}\n{os.environ.get('MASTER_PORT', '')}"
    if run_id == "none":
        launch += f"\n{os.getppid()}\n{os.environ.get('TORCHELASTIC_RESTART_COUNT')}"
    key = hashlib.sha256(f"{launch}\n{line}".encode()).hexdigest()[:24]
    marker = Path(tempfile.gettempdir()) / f"{ERROR_MARKER}{key}"
    _remove_stale_markers(marker.parent)
    try:
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    except FileExistsError:
        return False
    except OSError:  # no writable temp dir: print rather than hide the error
        return True
    return True


def _close_bars() -> None:
    """Close the progress bars an error or a Ctrl-C left open, so that the one line starts a line of its own and is
    the last: a bar closed later (when it is collected at exit) drew itself again after it."""
    std = sys.modules.get("tqdm.std")  # never imported: no bar was ever open
    for bar in list(getattr(getattr(std, "tqdm", None), "_instances", ())):
        try:
            bar.close()
        except Exception:  # a bar whose stream is gone: nothing to tidy
            pass


def _fail(line: str) -> None:
    _close_bars()
    line = line.replace("\r", "\\r").replace("\n", "\\n")  # a path holding a newline: still one line
    if _first_on_this_node(line):
        _echo(f"error: {line}", err=True)
    sys.exit(2)


def _interrupted(exc: KeyboardInterrupt) -> None:
    """The one line of a stopped run (a training run names the iteration it saved) and 128 + the signal's number."""
    # A KeyboardInterrupt that escaped an exec() of a string (dataclasses and namedtuple make their methods so, as a
    # module imports) marks it unhandled in CPython, and a `python -m accvideo` run (torchrun's workers) then ends
    # by SIGINT whatever code it exits with (SIGTERM read as Ctrl-C); an exec that returns clears the mark.
    exec("pass")
    _close_bars()
    if LAUNCHER_GONE.is_set():
        _echo(launcher_gone_line(), err=True)
        sys.exit(130)
    line = str(exc) or ("interrupted" if signal_name() == "SIGINT" else f"interrupted ({signal_name()})")
    if _first_on_this_node(line):  # under torchrun every rank stops alike: one line a node
        _echo(line, err=True)
    sys.exit(exit_code())


def _check_threads_variable() -> None:
    """Refuse an OMP_NUM_THREADS that OpenMP cannot read (`0`, `-3`, `four`): libgomp printed its own warning as torch
    loaded and the run went on with a thread count the user did not choose. Before torch is imported."""
    value = os.environ.get("OMP_NUM_THREADS")
    if value is None:
        return
    if not re.fullmatch(r"\s*[1-9]\d*(\s*,\s*[1-9]\d*)*\s*", value):  # OpenMP also takes nested lists: 4,2
        _fail(
            f"OMP_NUM_THREADS={value!r} is not a positive number of threads; set it to one (e.g. OMP_NUM_THREADS=2) "
            "or unset it"
        )


def _check_umask() -> None:
    """Refuse a umask that takes permissions from the owner (077 is fine, 277 or 777 are not): the folders accvideo
    makes would not let it write or read back its own files (a resumed run, a SynVid, a checkpoint) and the user's
    tools could not open its outputs; such a run failed midway, far from the cause."""
    mask = os.umask(0o022)
    os.umask(mask)  # reading the umask means setting it; put it straight back
    if mask & 0o700:
        _fail(
            f"the umask is {mask:04o}, so the files and folders accvideo makes would not be readable and writable by "
            "you; run `umask 022` (or 077) and rerun"
        )


def _check_locale(argv: list[str]) -> None:
    """Refuse a non-ASCII argument in an ASCII locale (LANG/LC_ALL=C or POSIX with PYTHONUTF8=0, where Python's UTF-8
    mode is off): its bytes reach Python as surrogate escapes, so a prompt `é` was encoded as the text '\\udcc3\\udca9',
    a `--negative-prompt` of it was a traceback writing the shard, and a folder `tïny` was a safetensors path it
    cannot open ('cannot load the pipeline ... re-download it'). Before torch is imported."""
    if sys.flags.utf8_mode or codecs.lookup(sys.getfilesystemencoding()).name != "ascii":
        return
    given = next((a for a in argv if not a.isascii()), None)
    if given is not None:
        shown = os.fsencode(given).decode("utf-8", "backslashreplace")
        _fail(
            f"the argument {shown!r} is not ASCII and this locale's encoding is ASCII (LANG/LC_ALL=C or POSIX with "
            "PYTHONUTF8=0), so Python cannot read it as text; rerun with PYTHONUTF8=1 (or LC_ALL=C.UTF-8)"
        )


def _verb_name(argv: list[str]) -> str | None:
    """The verb an argv names ("distill", "decoder distill"), or None."""
    if argv and argv[0] in GROUPS and len(argv) > 1:
        return f"{argv[0]} {argv[1]}"
    return argv[0] if argv else None


def main(argv: list[str] | None = None) -> None:
    """Console entry point: AccVideoError -> 'error: ...' on stderr and exit code 2 (once per node under torchrun)."""
    with guarded_streams():  # a reader of stdout or stderr that went away stops nothing (core/streams.py)
        _main(list(sys.argv[1:] if argv is None else argv))


def _main(argv: list[str]) -> None:
    watch_launcher()  # under torchrun: stop when the launcher is gone (core/launcher.py)
    try:
        os.getcwd()
    except FileNotFoundError:  # torch's libraries then fail to load (oneMKL: FATAL ERROR), printing their own lines
        _fail("the current folder no longer exists (deleted or moved); cd to an existing folder and rerun the command")
    if argv and argv[0] not in ("-h", "--help", "--version"):
        _check_umask()
        _check_threads_variable()
        _check_locale(argv)
    try:
        with catch_interrupts():  # a Ctrl-C that Python swallowed still stops the run (core/interrupts.py)
            if argv and argv[0] not in ("-h", "--help", "--version"):
                _quiet_libraries()  # imports torch and diffusers: a Ctrl-C here is `interrupted` too
            dispatch(argv)
            check_interrupt()  # the command returned after a swallowed Ctrl-C: it was still interrupted
    except AccVideoError as exc:
        _fail(str(exc))
    except KeyboardInterrupt as exc:
        _interrupted(exc)
    except Exception as exc:  # faults of the machine, not bugs: one line each (torch is not imported for this)
        if LAUNCHER_GONE.is_set():  # a collective failed because the launcher took the other workers with it
            _echo(launcher_gone_line(), err=True)
            sys.exit(130)
        line = fault_line(exc, _verb_name(argv))
        if line is None:
            raise
        _fail(line)
    sys.exit(0)


if __name__ == "__main__":
    main()
