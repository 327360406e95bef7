"""The CLI's contract for bad input: one line on stderr, a non-zero exit, nothing half-written."""

from __future__ import annotations

from pathlib import Path

import pytest
from support import leftovers, run_failing, write

from llmrec.cli import main
from llmrec.data import prepared


def test_help_lists_prepare(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0 and "prepare" in capsys.readouterr().out


@pytest.mark.parametrize(
    "files, expected",
    [
        ({"log.csv": ""}, "log.csv: file is empty"),
        ({"log.csv": "user,item,rating\n1,2,x\n"}, "log.csv: line 2: column 'rating': 'x' is not a number"),
        ({"log.csv": "user,thing\n1,2\n"}, "log.csv: missing column(s) item"),
        ({"log.xlsx": "junk"}, "unknown format '.xlsx'"),
    ],
)
def test_bad_input_files(tmp_path: Path, capsys, files: dict[str, str], expected: str):
    for name, text in files.items():
        data = write(tmp_path / name, text)
    out = tmp_path / "out"
    err = run_failing(["prepare", "--data", str(data), "--out", str(out), "--no-progress"], capsys)
    assert expected in err
    assert not out.exists() and not leftovers(tmp_path)


def test_missing_path_and_bad_arguments(tmp_path: Path, capsys):
    err = run_failing(["prepare", "--data", str(tmp_path / "nope"), "--out", str(tmp_path / "o")], capsys)
    assert "nope: no such file or folder" in err
    err = run_failing(["prepare", "--out", str(tmp_path / "o"), "--max-history", "0"], capsys)
    assert "--max-history must be >= 1" in err
    with pytest.raises(SystemExit):  # argparse's own usage error, exit 2
        main(["prepare", "--out", str(tmp_path / "o"), "--columns", "user"])
    assert "expected ROLE=COLUMN" in capsys.readouterr().err


def test_existing_output_is_kept_unless_overwrite(tmp_path: Path, tiny_movielens: Path, capsys, tokenizer):
    out = tmp_path / "out"
    write(out / "keep.txt", "mine")
    err = run_failing(["prepare", "--data", str(tiny_movielens), "--out", str(out)], capsys)
    assert "pass --overwrite" in err and (out / "keep.txt").read_text() == "mine"
    assert main(["prepare", "--data", str(tiny_movielens), "--out", str(out), "--overwrite", "--no-progress"]) == 0
    assert (out / "manifest.json").is_file() and not (out / "keep.txt").exists() and not leftovers(tmp_path)


def test_failure_while_writing_leaves_nothing(tmp_path: Path, tiny_movielens: Path, monkeypatch, capsys, tokenizer):
    def broken(folder, task, records):
        (folder / task).mkdir(parents=True)
        (folder / task / "half").write_text("x")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(prepared, "write_sft", broken)
    out = tmp_path / "out"
    with pytest.raises(OSError):
        main(["prepare", "--data", str(tiny_movielens), "--out", str(out), "--no-progress"])
    assert not out.exists() and not leftovers(tmp_path)


def test_examples_print_one_rendered_prompt_per_task(tmp_path: Path, tiny_movielens: Path, capsys, tokenizer):
    argv = ["prepare", "--data", str(tiny_movielens), "--out", str(tmp_path / "o"), "--examples", "1",
            "--rank-candidates", "2", "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "3 users, 5 items, 10 interactions" in out
    for task in ("next_item", "yes_no", "explain", "rank"):
        assert f"=== {task} (test)" in out
