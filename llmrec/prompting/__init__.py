"""Prompting: templates, the samples built from split interactions, and ``prepare`` (data in, SFT folder out)."""
