"""Generated results blocks know the code they measured: benchmarks/check_results.py finds the stale ones.

Hashing only: no benchmark runs here.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
import check_results  # noqa: E402
import results_blocks as rb  # noqa: E402

BODY = "| p | cut |\n|---|---|\n| 4 | 0.01 |"


def test_no_block_of_the_repository_is_stale_or_unstamped():
    statuses = check_results.check(REPO)
    assert statuses, "no generated block found in README.md and docs/"
    failing = [s for s in statuses if s.failing]
    assert not failing, "\n" + check_results.report(statuses)


def test_every_kept_block_of_the_repository_shows_its_reason():
    for path in check_results.pages(REPO):
        for block in rb.blocks(path.read_text()):
            stamp = block.stamp()
            if stamp is not None and stamp.kept:
                assert block.body.startswith(f"> Kept from commit {stamp.commit}: {stamp.kept}"), block.key


@pytest.fixture
def tree(tmp_path):
    """A repository with one source package, one benchmark and a page holding one generated block."""
    (tmp_path / "pkg" / "sub").mkdir(parents=True)
    (tmp_path / "pkg" / "a.py").write_text("A = 1\n")
    (tmp_path / "pkg" / "sub" / "b.py").write_text("B = 2\n")
    (tmp_path / "pkg" / "notes.txt").write_text("not a source\n")
    (tmp_path / "pkg" / "opts.yaml").write_text("gamma_dec: 0.9\n")
    (tmp_path / "bench.py").write_text("print('measure')\n")
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "page.md").write_text("# Page\n\nBefore.\n\n<!-- bench:table:begin -->\nold\n"
                                               "<!-- bench:table:end -->\n\nAfter.\n")
    stamp = rb.stamp(("pkg", "bench.py"), "python3 bench.py --output docs/page.md", root=tmp_path)
    rb.write_block(tmp_path / "docs" / "page.md", "bench", "table", BODY, stamp, title="# Page")
    return tmp_path


def states(root: Path) -> dict[str, str]:
    return {s.key: s.state for s in check_results.check(root)}


def test_a_block_written_now_is_fresh_and_the_page_around_it_is_kept(tree):
    text = (tree / "docs" / "page.md").read_text()
    assert text.startswith("# Page\n\nBefore.\n\n<!-- bench:table:begin\n") and text.endswith("\n\nAfter.\n")
    assert "\nold\n" not in text and BODY in text
    block = rb.find(text, "bench:table")
    assert block.body == BODY
    assert block.attrs["command"] == "python3 bench.py --output docs/page.md"
    assert block.attrs["sources"] == "pkg bench.py"
    assert states(tree) == {"bench:table": "fresh"}
    assert check_results.main(["--root", str(tree)]) == 0


@pytest.mark.parametrize("change", ["edit", "new file", "benchmark", "rename", "option file"])
def test_a_changed_source_makes_the_block_stale(tree, change, capsys):
    if change == "edit":
        (tree / "pkg" / "sub" / "b.py").write_text("B = 3\n")
    elif change == "new file":
        (tree / "pkg" / "c.py").write_text("C = 3\n")
    elif change == "benchmark":
        (tree / "bench.py").write_text("print('measure differently')\n")
    elif change == "option file":  # a default in a directory of option files (conf/ddm) changes the runs
        (tree / "pkg" / "opts.yaml").write_text("gamma_dec: 0.5\n")
    else:
        (tree / "pkg" / "a.py").rename(tree / "pkg" / "a2.py")
    assert states(tree) == {"bench:table": "stale"}
    assert check_results.main(["--root", str(tree)]) == 1
    out = capsys.readouterr().out
    assert "stale" in out and "regenerate: python3 bench.py --output docs/page.md" in out


def test_a_file_that_is_no_declared_source_does_not_matter(tree):
    (tree / "pkg" / "notes.txt").write_text("edited\n")
    (tree / "other.py").write_text("X = 1\n")
    assert states(tree) == {"bench:table": "fresh"}


def test_a_kept_block_passes_and_shows_its_reason(tree, capsys):
    (tree / "pkg" / "a.py").write_text("A = 2\n")
    page = tree / "docs" / "page.md"
    assert check_results.main(["--root", str(tree), "--keep", "docs/page.md", "bench:table",
                               "its code changed since; rerunning takes 2 h"]) == 0
    block = rb.find(page.read_text(), "bench:table")
    assert block.attrs["kept"] == "its code changed since; rerunning takes 2 h"
    shown = f"> Kept from commit {block.attrs['commit']}: its code changed since; rerunning takes 2 h"
    assert block.body == f"{shown}\n\n{BODY}"
    capsys.readouterr()
    assert check_results.main(["--root", str(tree)]) == 0
    out = capsys.readouterr().out
    assert "kept" in out and "rerunning takes 2 h" in out and "regenerate: python3 bench.py" in out
    # unkept, it is stale again, and its body is what it was
    check_results.main(["--root", str(tree), "--keep", "docs/page.md", "bench:table", ""])
    assert rb.find(page.read_text(), "bench:table").body == BODY
    assert states(tree) == {"bench:table": "stale"}


def test_a_kept_block_whose_reason_is_not_shown_is_invalid(tree):
    page = tree / "docs" / "page.md"
    (tree / "bench.py").write_text("print('measure differently')\n")
    rb.keep(page, "bench:table", "not rerun", tree)
    assert states(tree) == {"bench:table": "kept"}
    page.write_text(page.read_text().replace("> Kept from commit", "Kept from commit"))
    assert states(tree) == {"bench:table": "invalid"}


def test_a_change_after_a_block_was_kept_makes_it_stale_until_it_is_kept_again(tree, capsys):
    page = tree / "docs" / "page.md"
    (tree / "pkg" / "a.py").write_text("A = 2\n")
    rb.keep(page, "bench:table", "a.py's change does not reach this table", tree)
    assert rb.find(page.read_text(), "bench:table").attrs["kept_at"] == rb.fingerprint(("pkg", "bench.py"), tree)
    assert states(tree) == {"bench:table": "kept"}
    (tree / "bench.py").write_text("print('measure differently')\n")  # a change the reason does not cover
    assert states(tree) == {"bench:table": "stale"}
    assert check_results.main(["--root", str(tree)]) == 1
    assert "changed after it was kept" in capsys.readouterr().out
    assert check_results.main(["--root", str(tree), "--keep", "docs/page.md", "bench:table",
                               "a.py's change and bench.py's do not reach this table"]) == 0
    assert states(tree) == {"bench:table": "kept"}


def test_a_kept_block_without_the_fingerprint_its_reason_covers_is_invalid(tree):
    page = tree / "docs" / "page.md"
    (tree / "pkg" / "a.py").write_text("A = 2\n")
    rb.keep(page, "bench:table", "not rerun", tree)
    text = page.read_text()
    page.write_text("\n".join(line for line in text.splitlines() if not line.startswith("kept_at:")) + "\n")
    assert states(tree) == {"bench:table": "invalid"}


def test_regenerating_a_kept_block_drops_the_mark(tree):
    page = tree / "docs" / "page.md"
    rb.keep(page, "bench:table", "not rerun", tree)
    rb.write_block(page, "bench", "table", BODY, rb.stamp(("pkg", "bench.py"), "python3 bench.py", tree), "# Page")
    block = rb.find(page.read_text(), "bench:table")
    assert "kept" not in block.attrs and block.body == BODY
    assert page.read_text().count("bench:table:begin") == 1


def test_unstamped_blocks_and_missing_sources_are_invalid(tree):
    page = tree / "docs" / "page.md"
    page.write_text(page.read_text() + "\n<!-- bench:bare:begin -->\nx\n<!-- bench:bare:end -->\n")
    shutil.rmtree(tree / "pkg")
    assert states(tree) == {"bench:table": "invalid", "bench:bare": "invalid"}
    assert check_results.main(["--root", str(tree)]) == 1


def test_the_fingerprint_of_a_past_commit_is_that_of_its_tree(tree):
    def git(*args):
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.org", *args], cwd=tree,
                       check=True, capture_output=True)

    git("init", "-q")
    git("add", "pkg", "bench.py")
    git("commit", "-q", "-m", "first")
    sources = ("pkg", "bench.py")
    first = rb.fingerprint(sources, tree)
    assert rb.fingerprint(sources, tree, "HEAD") == first
    assert rb.head_commit(sources, tree) == subprocess.run(["git", "rev-parse", "--short=7", "HEAD"], cwd=tree,
                                                            capture_output=True, text=True).stdout.strip()
    (tree / "pkg" / "a.py").write_text("A = 5\n")
    assert rb.head_commit(sources, tree).endswith("-dirty")
    git("commit", "-q", "-am", "second")
    assert rb.fingerprint(sources, tree, "HEAD~1") == first != rb.fingerprint(sources, tree)
    # a source that did not exist yet at the commit counts as absent, not as an error
    (tree / "new").mkdir()
    (tree / "new" / "d.py").write_text("D = 1\n")
    assert rb.fingerprint((*sources, "new"), tree, "HEAD") != rb.fingerprint(sources, tree, "HEAD")
    # --stamp records the fingerprint of that commit: the block is then stale against the working tree
    assert check_results.main(["--root", str(tree), "--stamp", "docs/page.md", "bench:table", "--commit", "HEAD~1",
                               "--sources", *sources, "--command", "python3 bench.py"]) == 0
    block = rb.find((tree / "docs" / "page.md").read_text(), "bench:table")
    assert block.attrs["fingerprint"] == first and block.body == BODY
    assert states(tree) == {"bench:table": "stale"}
