"""Progress bars in a log (stderr a file or a pipe) against on a terminal."""

from __future__ import annotations

import io
import re
import sys

from accvideo.core.progress import LOG_INTERVAL, progress_bar


class Stream(io.StringIO):
    def __init__(self, terminal: bool):
        super().__init__()
        self.terminal = terminal

    def isatty(self) -> bool:
        return self.terminal


def drawn(monkeypatch, terminal: bool, **kwargs) -> tuple[str, object]:
    stream = Stream(terminal)
    monkeypatch.setattr(sys, "stderr", stream)
    bar = progress_bar(range(3), desc="work", unit="it", **kwargs)
    for _ in bar:
        pass
    return stream.getvalue(), bar


def test_a_log_gets_no_transient_bar_and_a_lasting_bar_ends_on_its_own_line(monkeypatch):
    text, _ = drawn(monkeypatch, terminal=False, transient=True)
    assert text == ""  # a terminal erases it when done; a log would keep a line of blanks
    text, bar = drawn(monkeypatch, terminal=False)
    assert text.endswith("\n") and "3/3" in text.splitlines()[-1]
    assert not [frame for frame in re.split(r"[\r\n]", text) if frame and not frame.strip()]  # no line of blanks
    assert bar.mininterval == LOG_INTERVAL  # a long run's log is redrawn every half minute, not ten times a second
    assert bar.maxinterval == LOG_INTERVAL  # nor every 10 s by tqdm's monitor thread


def test_a_terminal_gets_both_and_the_transient_one_is_erased(monkeypatch):
    text, bar = drawn(monkeypatch, terminal=True, transient=True)
    assert "work:" in text and not text.endswith("\n") and text.rstrip("\r").endswith(" ")  # drawn, then blanked
    assert bar.mininterval < 1
    text, _ = drawn(monkeypatch, terminal=True)
    assert text.endswith("\n") and "3/3" in text


def test_show_false_draws_nothing_anywhere(monkeypatch):
    for terminal in (True, False):
        assert drawn(monkeypatch, terminal=terminal, show=False)[0] == ""


def test_a_bar_that_posts_its_loss_each_step_redraws_in_a_log_only_every_interval(monkeypatch):
    """Was: tqdm's set_postfix redraws at once, so a training bar (the teacher's VAE: 4,000 steps) wrote a frame a
    step into a log, past the half-minute interval."""
    for terminal, most in ((False, 3), (True, 200)):
        stream = Stream(terminal)
        monkeypatch.setattr(sys, "stderr", stream)
        bar = progress_bar(total=200, desc="train", unit="step")
        for step in range(200):
            bar.update(1)
            bar.set_postfix(loss=f"{1 / (step + 1):.4f}")
            bar.set_description(f"train {step % 2}")
        bar.close()
        frames = [f for f in re.split(r"[\r\n]", stream.getvalue()) if f.strip()]
        assert (len(frames) <= most) if not terminal else len(frames) >= most, (terminal, len(frames))
        assert "200/200" in frames[-1]
