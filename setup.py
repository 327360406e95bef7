"""Package discovery: every ``llmrec*`` package with an ``__init__.py``, plus the two folders that
ship under other names (``prompts/`` as ``llmrec.templates``, ``finetune/`` as ``llmrec.recipes``,
mapped in pyproject.toml). Everything else about the package is in pyproject.toml."""

from setuptools import find_packages, setup

setup(packages=[*find_packages(include=["llmrec", "llmrec.*"]), "llmrec.templates", "llmrec.recipes"])
