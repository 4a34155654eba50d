"""A device this machine lacks is refused before a command makes its output folder (as distill and synthesize do):
the refusal used to come after `--out` (and, for the demo, its prompts, training.json and report/) existed."""

from __future__ import annotations

import pytest
import torch
from cli_helpers import run_cli

COMMANDS = {
    "evaluate": ["evaluate", "--model", "builtin"],
    "demo": ["demo", "--preset", "quick"],
    "ablate": ["ablate", "--preset", "quick"],
    "teacher-train": ["teacher", "train", "--preset", "quick"],
}
# cli.py's _teacher_train claims OUT and OUT.work before it resolves the device (strict: drop the mark once it does not)


@pytest.mark.parametrize("command", COMMANDS)
def test_a_missing_cuda_is_refused_before_out_exists(command, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    out = tmp_path / "x" / "out"
    code, _, err = run_cli([*COMMANDS[command], "--out", str(out), "--device", "cuda"], capsys)
    assert code == 2, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "use --device cpu" in lines[0], err
    assert not out.exists() and list(tmp_path.iterdir()) == [], sorted(tmp_path.rglob("*"))
