"""Prompt templates, one YAML file a task; installed as the package ``llmrec.templates``."""
