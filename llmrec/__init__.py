"""llmrec: recommendations from a generative LLM, decoded only over a catalogue."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("llmrec")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+local"

__all__ = ["Recommender", "__version__"]


def __getattr__(name: str):
    # lazy: `import llmrec` (and `llmrec --help`) must not pull in torch
    if name == "Recommender":
        from llmrec.decoding.recommender import Recommender

        return Recommender
    raise AttributeError(f"module 'llmrec' has no attribute {name!r}")
