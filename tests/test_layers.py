"""Imports go one way: core <- world, models <- stages <- recipes <- cli (docs/ARCHITECTURE.md).

Among the stages an import may only point back along the pipeline (distill reads SynVid; export reads a
distilled student), never forward, so no stage needs a later one to load.
"""

import ast
from pathlib import Path

import accvideo

ROOT = Path(accvideo.__file__).parent
LAYERS = {
    "errors": 0,
    "core": 0,
    "world": 1,
    "models": 1,
    "teacher": 2,
    "synthesize": 2,
    "distill": 2,
    "decoder": 2,
    "sample": 2,
    "export": 2,
    "evaluate": 2,
    "demo": 3,
    "bench": 3,
    "toy1d": 3,
    "cli": 4,
    "entry": 4,
    "__main__": 4,
    "__init__": 4,
}
PIPELINE = ["teacher", "synthesize", "distill", "decoder", "sample", "export", "evaluate"]


def imports_of(path: Path) -> list[tuple[int, str]]:
    """(line, top-level accvideo package) of every accvideo import in a file, at any depth."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] == "accvideo" and len(parts) > 1:
                found.append((node.lineno, parts[1]))
    return found


def test_every_package_has_a_layer():
    packages = {
        p.stem if p.is_file() else p.name
        for p in ROOT.iterdir()
        if (p.suffix == ".py" or (p.is_dir() and (p / "__init__.py").exists()))
    }
    assert packages <= set(LAYERS), packages - set(LAYERS)


def test_imports_go_one_way():
    wrong = []
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT)
        here = rel.parts[0].removesuffix(".py")
        for line, there in imports_of(path):
            if there == here:
                continue
            if LAYERS[there] > LAYERS[here]:
                wrong.append(f"{rel}:{line} ({here}, layer {LAYERS[here]}) imports {there} (layer {LAYERS[there]})")
            elif LAYERS[there] == LAYERS[here] == 2 and PIPELINE.index(there) > PIPELINE.index(here):
                wrong.append(f"{rel}:{line} stage {here} imports the later stage {there}")
            elif LAYERS[there] == LAYERS[here] and LAYERS[here] in (1, 3) and here != there:
                wrong.append(f"{rel}:{line} {here} imports its sibling {there}")
    assert not wrong, "\n".join(wrong)
