"""Every `accvideo` command the README and docs/ show parses with today's command line.

A user copies the commands in the docs' shell blocks; a renamed flag or setting left in a doc fails there first. Whole
commands in ```bash blocks are resolved as the CLI would (flags, key=value settings, presets, values), without running;
inline `accvideo ...` spans are usage lines with placeholders (RUN, [--gif], a|b), so only their flag and setting
names are checked.
"""

import re
import shlex
from pathlib import Path

import pytest

from accvideo import cli
from accvideo.core.config import known_keys
from accvideo.errors import AccVideoError

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# a line that runs accvideo: after a prompt, environment settings, a loop's `do`, `&&`, time/nohup or a launcher
COMMAND = re.compile(
    r"^\s*(?:\$\s+)?(?:.*?(?:;\s*do|&&)\s+)?(?:[A-Z_][A-Z0-9_]*=\S*\s+)*(?:(?:nohup|time|/usr/bin/time -v)\s+)?"
    r"(?:(?:torchrun|python -m torch\.distributed\.run)\s.*?(?:\s-m|\s--no-python)\s+)?"
    r"(?:python -m accvideo|accvideo)\s+([a-z].*)"
)
END = re.compile(r"\s(?:&&|\|\||\||;|>|2>|#)(?:\s|$)")  # where a shell line's accvideo command stops
PLACEHOLDER = re.compile(r"\.\.\.|[\[\]<>$]")  # an elided or templated command: checked as a usage line


def _verb(argv: list[str]) -> tuple[str | None, list[str]]:
    name = argv[0] if argv else ""
    if name in cli.GROUPS and len(argv) > 1:
        name, argv = f"{name} {argv[1]}", argv[1:]
    return (name if name in cli.BY_NAME else None), argv[1:]


def shell_commands(text: str) -> list[tuple[int, str]]:
    """(line number, command after `accvideo`) of each accvideo command in the text's fenced shell blocks."""
    found = []
    for block in re.finditer(r"^```(bash|sh|shell|console|)\n(.*?)^```", text, re.S | re.M):
        first = text.count("\n", 0, block.start(2)) + 1
        lines = block.group(2).split("\n")
        i = 0
        while i < len(lines):
            start, line = i, lines[i]
            while line.rstrip().endswith("\\") and i + 1 < len(lines):  # a command continued on the next line
                i += 1
                line = line.rstrip()[:-1] + " " + lines[i].strip()
            i += 1
            match = COMMAND.search(line)
            if match:
                found.append((first + start, END.split(match.group(1))[0].strip()))
    return found


def inline_commands(text: str) -> list[tuple[int, str]]:
    """(line number, command after `accvideo`) of each inline `accvideo VERB ...` span outside fenced blocks."""
    prose = re.sub(r"^```.*?^```", lambda m: "\n" * m.group(0).count("\n"), text, flags=re.S | re.M)
    found = []
    for span in re.finditer(r"`([^`\n]+)`", prose):
        match = COMMAND.search(span.group(1))
        if match:
            found.append((prose.count("\n", 0, span.start()) + 1, match.group(1).strip()))
    return found


def resolve_problem(command: str) -> str | None:
    """Why a whole command would not parse (None when it does, or when it is a templated usage line)."""
    if PLACEHOLDER.search(command):
        return usage_problem(command)
    name, args = _verb(shlex.split(command))
    if name is None:
        return f"no verb {command.split()[0]!r}"
    if "--help" in args or "-h" in args:
        return None
    config = next((args[i + 1] for i, a in enumerate(args[:-1]) if a == "--config"), None)
    if config is not None and not (ROOT / config).is_file():
        return usage_problem(command)  # the reader's own YAML (run.yaml): its flags are still checked
    try:
        cli.resolve(cli.BY_NAME[name], args)
    except AccVideoError as exc:
        return str(exc)
    return None


def usage_problem(command: str) -> str | None:
    """An unknown --flag or key= in a usage line (placeholders and alternatives allowed)."""
    words = command.replace("\\|", " ").replace("|", " ").replace("[", " ").replace("]", " ").split()
    name, args = _verb([w.strip("\"'") for w in words])
    if name is None:
        return f"no verb {words[0]!r}" if words and words[0] not in ("VERB", "--help", "--version") else None
    verb = cli.BY_NAME[name]
    cls = cli._load(verb.config)
    parser, _ = cli._verb_parser(verb, cls)
    flags = set(parser._option_string_actions)
    keys = {*known_keys(cls), *verb.positional, "key"}  # key=value: the placeholder
    for word in args:
        word = word.strip("\"'`,")
        flag = word.split("=", 1)[0]
        if flag.startswith("--") and flag not in flags:
            return f"accvideo {name} has no {flag}"
        if cli.SETTING.match(word) and word.split("=", 1)[0] not in keys:
            return f"accvideo {name} has no setting {word.split('=', 1)[0]}"
    return None


def _cases(extract):
    return [
        pytest.param(command, id=f"{path.name}:{line}")
        for path in DOCS
        for line, command in extract(path.read_text(encoding="utf-8"))
    ]


SHELL = _cases(shell_commands)
INLINE = _cases(inline_commands)


def test_the_docs_show_commands():
    """The extraction finds the docs' commands (an empty list would pass every check below)."""
    shell = [p.values[0] for p in SHELL]
    assert len(shell) >= 60 and len(INLINE) >= 60
    assert {"distill", "synthesize", "sample", "export", "evaluate"} <= {_verb(shlex.split(c))[0] for c in shell}


@pytest.mark.parametrize("command", SHELL)
def test_shell_block_command_parses(command):
    assert resolve_problem(command) is None


@pytest.mark.parametrize("command", INLINE)
def test_inline_command_names_real_flags(command):
    assert usage_problem(command) is None


def test_the_check_catches_a_stale_doc():
    """A renamed flag, an unknown setting, a bad value and a missing verb in a doc are each caught."""
    doc = (
        "```bash\n"
        "accvideo sample --model run --stepz 3 --out a.mp4\n"
        "accvideo distill --teacher builtin --data d --out r \\\n"
        "    no_such_key=1\n"
        "accvideo sample --model run --steps three --out a.mp4   # a comment\n"
        "accvideo synthesise --out d\n"
        "accvideo sample --model run --steps 3 --out a.mp4 && ls\n"
        "```\n"
        "Run `accvideo export RUN --out DIR [--formatt lora]` or `accvideo ablate [seedz=[0,1]]`.\n"
    )
    commands = shell_commands(doc)
    assert [line for line, _ in commands] == [2, 3, 5, 6, 7]
    problems = [resolve_problem(c) for _, c in commands]
    assert "--stepz" in problems[0] and "no_such_key" in problems[1] and "three" in problems[2]
    assert "synthesise" in problems[3] and problems[4] is None
    assert [usage_problem(c) for _, c in inline_commands(doc)] == [
        "accvideo export has no --formatt",
        "accvideo ablate has no setting seedz",
    ]
