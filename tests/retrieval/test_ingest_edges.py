"""`bothbot ingest` at the edges: links that loop, empty files, missing paths, knowledge base names."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from bot.cli import build_parser
from retrieval.api import kb_name_problem
from retrieval.cli import EXIT_OK, EXIT_PARTIAL, EXIT_USAGE
from retrieval.config import RetrievalConfig, RetrievalEnvironment
from retrieval.documents import LoadFailure
from retrieval.loaders import iter_documents
from tests.retrieval.conftest import write_files


async def run(env: RetrievalEnvironment, *argv: str) -> int:
    args: argparse.Namespace = build_parser().parse_args(argv)
    code: int = await args.retrieval_handler(args, env)
    return code


@pytest.fixture
def env(tmp_path: Path) -> RetrievalEnvironment:
    return RetrievalEnvironment(RetrievalConfig(), tmp_path / "data")


def _loop(folder: Path) -> Path:
    (folder / "loop-a").symlink_to(folder / "loop-b")
    (folder / "loop-b").symlink_to(folder / "loop-a")
    return folder / "loop-a"


async def test_a_symlink_loop_argument_is_named_as_skipped_and_the_rest_goes_on(
    env: RetrievalEnvironment, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    docs = write_files(tmp_path / "docs", {"a.md": "# A\n\nalpha text"})
    loop = _loop(tmp_path)

    code = await run(env, "ingest", str(loop), str(docs))

    out = capsys.readouterr()
    assert code == EXIT_PARTIAL
    assert f"skipped {loop}: symbolic link loop" in out.err
    assert "1 documents" in out.out


async def test_a_symlink_loop_inside_a_folder_is_skipped(
    env: RetrievalEnvironment, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    docs = write_files(tmp_path / "docs", {"a.md": "# A\n\nalpha text"})
    (docs / "x.md").symlink_to(docs / "y.md")
    (docs / "y.md").symlink_to(docs / "x.md")

    code = await run(env, "ingest", str(docs))

    out = capsys.readouterr()
    assert code == EXIT_PARTIAL
    assert "x.md: symbolic link loop" in out.err
    assert "1 documents" in out.out


def test_the_loader_names_a_loop_instead_of_raising(tmp_path: Path) -> None:
    [failure] = list(iter_documents([_loop(tmp_path)]))
    assert isinstance(failure, LoadFailure)
    assert failure.reason == "symbolic link loop"


async def test_an_empty_file_is_unchanged_the_second_time(
    env: RetrievalEnvironment, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    docs = write_files(tmp_path / "docs", {"a.md": "# A\n\nalpha text"})
    (docs / "empty.md").write_text("")
    assert await run(env, "ingest", str(docs)) == EXIT_OK
    capsys.readouterr()

    assert await run(env, "ingest", str(docs)) == EXIT_OK

    out = capsys.readouterr().out
    assert "2 documents (0 new or changed)" in out


async def test_a_path_that_does_not_exist_is_a_bad_argument(
    env: RetrievalEnvironment, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = await run(env, "ingest", str(tmp_path / "nonexistent") + "/")

    err = capsys.readouterr().err
    assert code == EXIT_USAGE
    assert "nonexistent: no such file or directory" in err


@pytest.mark.parametrize("name", ["a b", "a,b", "-x", ".hidden", "", "x" * 65, "a/b", "ü", "kb\n"])
async def test_a_kb_name_the_kb_command_could_not_select_is_refused(
    env: RetrievalEnvironment, tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str
) -> None:
    docs = write_files(tmp_path / "docs", {"a.md": "# A\n\nalpha text"})

    code = await run(env, "ingest", str(docs), f"--kb={name}")

    err = capsys.readouterr().err
    assert code == EXIT_USAGE
    assert "is not a valid knowledge base name" in err


@pytest.mark.parametrize("name", ["default", "eng", "team-handbook", "v1.2", "A_b", "0", "x" * 64])
def test_good_kb_names_pass_the_shared_rule(name: str) -> None:
    assert kb_name_problem(name) is None
