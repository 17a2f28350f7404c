"""The package's architecture, checked: layers import only downward, and no module imports itself back.

The contract (also in the README's "Code layout"), bottom to top. Packages on one line are
siblings: independent of each other.

    errors
    config | io | timeaxis | device   foundation
    data                        datasets on disk, importers, synthetic data
    models | eval               networks, CLIP, checkpoint format | metrics
    train | extract             warm-up, alternate, OV-OAD training, losses, pseudo-labels | feature extraction
    localize | online           offline detection | streaming detection
    demo                        the end-to-end recipe
    cli                         one thin file per command
    __main__

Every import counts, also those inside functions. Run directly (``python3 tests/test_layers.py``)
it prints the violations; ``.ci/run`` does so before the test suite.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "wtalkit"
LAYERS = [
    ["errors"],
    ["config", "io", "timeaxis", "device"],
    ["data"],
    ["models", "eval"],
    ["train", "extract"],
    ["localize", "online"],
    ["demo"],
    ["cli"],
    ["__main__"],
]


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """The wtalkit modules a file imports (``from wtalkit.x import y`` counts ``wtalkit.x.y`` if it is a module)."""
    out = set()
    me = module_name(path)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.split(".")[0] == "wtalkit"}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(up + ([base] if base else []))
            if base.split(".")[0] != "wtalkit":
                continue
            for a in node.names:
                sub = f"{base}.{a.name}"
                out.add(sub if _is_module(sub) else base)
    out.discard(me)
    return out


def _is_module(name: str) -> bool:
    p = ROOT.parent.joinpath(*name.split("."))
    return p.with_suffix(".py").is_file() or (p / "__init__.py").is_file()


def graph() -> dict[str, set[str]]:
    return {module_name(p): imports_of(p) for p in sorted(ROOT.rglob("*.py"))}


def layer_of(module: str) -> tuple[int, str] | None:
    """``(layer index, top-level part)`` of a module; None for the package's own ``__init__``."""
    parts = module.split(".")
    if len(parts) == 1:
        return None
    for i, names in enumerate(LAYERS):
        if parts[1] in names:
            return i, parts[1]
    raise AssertionError(f"{module} is in no layer: add it to LAYERS (and to the README's code layout)")


def layer_violations(g: dict) -> list[str]:
    bad = []
    for mod, deps in g.items():
        src = layer_of(mod)
        for dep in sorted(deps):
            dst = layer_of(dep)
            if src is None or dst is None:
                if dst is None and src is not None and dep == "wtalkit" and mod != "wtalkit.cli":
                    bad.append(f"{mod} imports the package root 'wtalkit' (import the module it needs)")
                continue
            if dst[0] > src[0]:
                bad.append(f"{mod} imports {dep}: upward ({src[1]} is below {dst[1]})")
            elif dst[0] == src[0] and dst[1] != src[1]:
                bad.append(f"{mod} imports {dep}: {src[1]} and {dst[1]} are independent siblings")
    return bad


def cycles(g: dict) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, on, stack, out, n = {}, {}, set(), [], [], [0]

    def visit(v):
        index[v] = low[v] = n[0]
        n[0] += 1
        stack.append(v)
        on.add(v)
        for w in g.get(v, ()):
            if w not in g:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(g):
        if v not in index:
            visit(v)
    return out


def test_every_import_runs_downward():
    assert layer_violations(graph()) == []


def test_no_import_cycles():
    assert cycles(graph()) == []


def test_no_importlib_tricks():
    """A hidden import would escape the contract."""
    for p in ROOT.rglob("*.py"):
        text = p.read_text(encoding="utf-8")
        assert "import_module(" not in text and "__import__(" not in text, p


def test_the_checker_sees_violations():
    g = {
        "wtalkit.data.x": {"wtalkit.train.y"},
        "wtalkit.train.y": {"wtalkit.data.x"},
        "wtalkit.models.a": {"wtalkit.eval.b"},
        "wtalkit.eval.b": set(),
    }
    assert any("upward" in v for v in layer_violations(g))
    assert any("independent siblings" in v for v in layer_violations(g))
    assert cycles(g) == [["wtalkit.data.x", "wtalkit.train.y"]]


if __name__ == "__main__":
    g = graph()
    problems = layer_violations(g) + [f"import cycle: {' -> '.join(c)}" for c in cycles(g)]
    print(
        "\n".join(problems)
        or f"layering: {len(g)} modules, {sum(map(len, g.values()))} imports, all downward, no cycles"
    )
    sys.exit(1 if problems else 0)
