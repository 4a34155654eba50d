"""`accvideo export RUN --format diffusers|lora|single-file --out DIR`: checks first, then one atomic write."""

from __future__ import annotations

import time
from pathlib import Path

from accvideo.core.outputs import owner
from accvideo.core.runtime import DTYPES
from accvideo.errors import AccVideoError
from accvideo.export.config import FORMATS
from accvideo.export.folder import building, check_target
from accvideo.export.formats import carry_decoder, check_single_file, write_diffusers, write_lora, write_single
from accvideo.export.scheduler import check_pipeline
from accvideo.export.source import read_source
from accvideo.models.decoder import find_decoder, load_decoder_for


def export_run(
    run: str | Path,
    fmt: str,
    out: str | Path,
    *,
    force: bool = False,
    dtype: str | None = None,
    decoder: str | Path | None = None,
) -> dict:
    """Export the student of `run` (a distill run folder or a student folder) to `out`; returns the manifest.

    `force` is accepted for old scripts: an earlier export is replaced without it, and a folder accvideo did not
    make is never replaced (core/outputs.py). `dtype` (diffusers and single-file formats) casts the saved
    transformer, e.g. "bfloat16"; None keeps the student's. `decoder` (a tiny decoder, checked against the teacher's
    VAE) is carried in OUT/decoder, and the README shows the call that decodes the stock pipeline's latents with it.
    """
    if fmt not in FORMATS:
        raise AccVideoError(f"--format must be one of {', '.join(FORMATS)}; got {fmt!r}")
    if dtype is not None and dtype not in DTYPES:
        raise AccVideoError(f"unknown --dtype {dtype!r}; use one of {', '.join(sorted(DTYPES))}")
    if dtype is not None and fmt == "lora":
        raise AccVideoError("--dtype applies to --format diffusers and single-file; the LoRA file is copied as trained")
    if decoder is not None and fmt == "single-file":
        raise AccVideoError(
            "--decoder goes with --format diffusers or lora; a single-file export carries the transformer only"
        )
    t0 = time.perf_counter()
    src = read_source(run)
    check_pipeline(src.pipeline)  # every format, before anything is made (`--format lora` wrote a plugin's run)
    target = check_target(
        Path(out),
        protected={
            "student": src.student_dir,
            "teacher": src.teacher_dir,
            "run": src.student_dir.parent if owner(src.student_dir.parent) == "distill" else src.student_dir,
        },
    )
    if fmt == "single-file":
        check_single_file(src)
    carried = None if decoder is None else load_decoder_for(decoder, src.teacher_dir)[1]
    with building(target) as tmp:
        if fmt == "lora":
            manifest = write_lora(src, tmp)
        else:
            write = write_diffusers if fmt == "diffusers" else write_single
            manifest = write(src, tmp, DTYPES[dtype] if dtype else None)
        if carried is not None:
            manifest = carry_decoder(find_decoder(decoder), carried, tmp, manifest)
    return {**manifest, "out": str(target), "seconds": round(time.perf_counter() - t0, 3)}
