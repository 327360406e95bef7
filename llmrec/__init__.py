"""llmrec: recommendations from a generative LLM, decoded only over a catalogue."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("llmrec")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+local"
