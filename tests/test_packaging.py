"""The installed package holds everything the source tree has (`make test` runs this against the wheel)."""

from __future__ import annotations

import pkgutil
from importlib import resources

from support import REPO

import llmrec


def test_every_subpackage_and_module_of_the_source_tree_is_installed():
    source = {
        ".".join(p.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")
        for p in (REPO / "llmrec").rglob("*.py")
    }
    installed = {"llmrec"} | {m.name for m in pkgutil.walk_packages(llmrec.__path__, prefix="llmrec.")}
    assert source - installed == set()


def test_templates_recipes_and_embedded_files_ship():
    templates = {p.name for p in resources.files("llmrec.templates").iterdir() if p.name.endswith(".yaml")}
    assert templates == {p.name for p in (REPO / "prompts").glob("*.yaml")}
    recipes = {p.name for p in resources.files("llmrec.recipes").iterdir() if p.name.endswith(".yaml")}
    assert recipes == {p.name for p in (REPO / "finetune").glob("*.yaml")}
    embedded = resources.files("llmrec.embedded")
    for folder in ("ml-latest-small", "adapter"):  # the adapter's cf/ subfolder included
        source = REPO / "llmrec" / "embedded" / folder
        assert files_under(embedded / folder) == {p.relative_to(source).as_posix() for p in source.rglob("*") if p.is_file()}


def files_under(root) -> set[str]:
    """Relative paths of the files below a package resource folder."""
    out = set()
    for p in root.iterdir():
        out |= {f"{p.name}/{q}" for q in files_under(p)} if p.is_dir() else {p.name}
    return out
