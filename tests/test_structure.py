"""The shape of the package: no import cycles, the CLI imports no torch, `llmrec env` reports."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import llmrec
from llmrec.cli import main
from llmrec.environment import cpu_bf16, cpu_flags, cpu_name


def import_graph() -> dict[str, set[str]]:
    """Module -> llmrec modules it imports, module-level and inside functions alike.

    ``from pkg import sub`` counts as importing the submodule ``pkg.sub``, ``from pkg import name``
    as importing ``pkg``.
    """
    root = Path(llmrec.__file__).parent
    files = {".".join(("llmrec", *p.relative_to(root).with_suffix("").parts)).removesuffix(".__init__"): p
             for p in root.rglob("*.py")}  # fmt: skip
    graph: dict[str, set[str]] = {m: set() for m in files}
    for module, path in files.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "llmrec":
                for alias in node.names:
                    sub = f"{node.module}.{alias.name}"
                    graph[module].add(sub if sub in files else node.module)
            elif isinstance(node, ast.Import):
                graph[module] |= {a.name for a in node.names if a.name in files}
        graph[module] &= set(files) - {module}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_no_import_cycles():
    graph = import_graph()
    assert len(graph) > 40 and "llmrec.decoding.backends.hf" in graph["llmrec.decoding.backends"]
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


def test_the_cycle_finder_finds_cycles():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_the_cli_imports_no_torch(tmp_path: Path):
    code = "import sys, llmrec.cli; print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'transformers', 'trl')))"
    # cwd outside the repository: `python -c` puts the cwd on sys.path, and the source tree's llmrec/ with it
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=tmp_path).stdout
    assert out.strip() == "[]"


def test_cpu_bf16_from_the_flags(tmp_path: Path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nmodel name\t: AMD EPYC 9R14\nflags\t\t: fpu avx2 avx512f avx512_bf16 amx_tile\n")
    assert cpu_flags(info) >= {"avx512_bf16", "avx2"} and cpu_name(info) == "AMD EPYC 9R14"
    assert cpu_bf16(cpu_flags(info)) == "avx512_bf16"
    assert cpu_bf16({"avx2", "fma"}) is None
    assert cpu_flags(tmp_path / "missing") == set()


def test_env_reports_versions_devices_and_cache(capsys, monkeypatch, tmp_path: Path):
    monkeypatch.setenv("LLMREC_CACHE_DIR", str(tmp_path / "cache"))
    assert main(["env", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["versions"]["llmrec"] == llmrec.__version__ and info["versions"]["torch"]
    assert info["devices"][0]["device"] == "cpu" and info["cache_dir"] == str(tmp_path / "cache")
    assert info["embedded_model_converted"] is False  # an empty cache: nothing converted there
    assert main(["env"]) == 0
    text = capsys.readouterr().out
    assert "- torch: " in text and "- cpu: " in text and "embedded model converted: no" in text
