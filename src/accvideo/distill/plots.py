"""Loss records: one JSON line per iteration, optional TensorBoard, and a PNG of the curves (matplotlib Agg)."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

from accvideo.core.files import write_text_atomic
from accvideo.core.inputs import is_int, is_number, parse_json
from accvideo.errors import AccVideoError

CURVES = (("traj", "L_traj (Eq. 6)"), ("g", "L_G (generator)"), ("d", "L_D (heads)"))


def check_tensorboard() -> None:
    """tensorboard=true needs the package; checked before a run writes anything."""
    if importlib.util.find_spec("tensorboard") is None:
        raise AccVideoError("tensorboard=true needs the tensorboard package: pip install tensorboard")


class LossLog:
    """Appends records to `losses.jsonl`; on resume, drops records past the checkpoint so none repeat."""

    def __init__(self, path: Path, resume_iteration: int, tensorboard_dir: Path | None = None, curves: tuple = CURVES):
        self.path = Path(path)
        self.curves = curves
        keep = [r for r in read_losses(self.path) if r["iteration"] <= resume_iteration]
        write_text_atomic(self.path, "".join(json.dumps(r) + "\n" for r in keep))
        self.writer = None
        if tensorboard_dir is not None:
            check_tensorboard()
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(tensorboard_dir))

    def write(self, record: dict, scalars: bool = True) -> None:
        """Append `record`; with `scalars`, also give its losses to TensorBoard (when on)."""
        line = (json.dumps(record) + "\n").encode()
        with self.path.open("ab", buffering=0) as f:
            start, done = f.seek(0, os.SEEK_END), 0
            try:
                while done < len(line):
                    done += f.write(line[done:])
            except OSError as exc:  # a full disk or the file-size limit: no torn record stays, and the line names it
                f.truncate(start)
                raise OSError(exc.errno, exc.strerror, str(self.path)) from None
        if self.writer is not None and scalars:
            for key, _ in self.curves:
                if record.get(key) is not None:
                    self.writer.add_scalar(f"loss/{key}", record[key], record["samples"])

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def _numbers(value) -> bool:
    return isinstance(value, list) and bool(value) and all(is_number(v) for v in value)


GAME = ("probe_acc_k", "acc_k")  # the heads' accuracy per key step: the probe's, else the training batches'


def read_losses(path: Path) -> list[dict]:
    """The records of a losses.jsonl: JSON objects with integer "iteration" and "samples". A torn last line (a killed
    writer) and lines that are no such record (edited by hand, bytes that are no text) are skipped, and a resumed
    run's rewrite leaves them out."""
    path = Path(path)
    if not path.is_file():
        return []
    records = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            record = parse_json(line)
        except ValueError:  # JSONDecodeError, or a line nested past the recursion limit
            continue
        if isinstance(record, dict) and all(is_int(record.get(k)) for k in ("iteration", "samples")):
            records.append(record)
    return records


def plot_losses(records: list[dict], out: Path, curves: tuple = CURVES) -> Path:
    """One panel per loss (of `curves`: (key, title) pairs) against samples seen, and one of the heads' accuracy per
    key step (the probe's, else the training batches') when the records have it, written atomically as PNG."""
    from accvideo.core.plotting import pyplot

    plt = pyplot()

    curves = [(k, label) for k, label in curves if any(is_number(r.get(k)) for r in records)]
    width = {key: max((len(r[key]) for r in records if _numbers(r.get(key))), default=0) for key in GAME}
    game = next((key for key in GAME if width[key]), None)
    panels = max(1, len(curves) + (game is not None))
    fig, axes = plt.subplots(1, panels, figsize=(4.2 * panels, 3.2), squeeze=False)
    for ax, (key, label) in zip(axes[0], curves, strict=False):  # one empty panel when there is no curve
        pts = [(r["samples"], r[key]) for r in records if is_number(r.get(key))]
        ax.plot([p[0] for p in pts], [p[1] for p in pts], lw=1)
        ax.set_title(label)
        ax.set_xlabel("samples seen")
        ax.grid(alpha=0.3)
    if game is not None:
        ax = axes[0][-1]
        rows = [r for r in records if _numbers(r.get(game)) and len(r[game]) == width[game]]
        for k in range(width[game]):
            ax.plot([r["samples"] for r in rows], [r[game][k] for r in rows], lw=1, label=f"k={k}")
        ax.axhline(0.5, color="grey", ls="--", lw=1)
        ax.set_ylim(0, 1)
        ax.set_title("D accuracy, " + ("probe set" if game == "probe_acc_k" else "training batches"))
        ax.set_xlabel("samples seen")
        ax.legend(fontsize=7, ncol=2)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    out = Path(out)
    tmp = out.with_name(f".{out.stem}.part.png")
    try:
        fig.savefig(tmp, dpi=100)
        os.replace(tmp, out)
    except BaseException:  # a second Ctrl-C mid-write: no half plot left behind
        tmp.unlink(missing_ok=True)
        raise
    finally:
        plt.close(fig)
    return out
