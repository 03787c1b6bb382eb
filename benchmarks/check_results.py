"""List the generated results blocks of docs/ and README.md whose measured code changed since they were run.

Each block's begin marker records its declared sources and their fingerprint at the run that wrote it
(benchmarks/results_blocks.py). A block is

- *fresh* when the fingerprint of its sources in the working tree is the recorded one;
- *stale* when it is not: the block measured other code; the command that regenerates it is printed;
- *kept* when it is stale but marked ``kept: <reason>``, shows ``> Kept from commit X: <reason>`` as its
  first line, and its sources are still those the reason was written for (``kept_at``); a change after
  the reason makes the block stale again;
- *invalid* when its marker records no fingerprint, names a source that does not exist, or is kept without
  showing the reason or without ``kept_at``.

Exits 1 when any block is stale or invalid. Only hashes files: no benchmark runs.

    python3 benchmarks/check_results.py
    python3 benchmarks/check_results.py --keep docs/dd_benchmark.md bench_dd:deep "its times predate a9c4868"
    python3 benchmarks/check_results.py --stamp docs/dd_benchmark.md bench_dd:deep --commit 48c8a6e \\
        --sources gnnddm/ddm gnnddm/models benchmarks/bench_dd.py --command "python3 benchmarks/bench_dd.py ..."
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import results_blocks as rb  # noqa: E402


@dataclass(frozen=True)
class Status:
    page: str
    key: str
    state: str  # fresh | stale | kept | invalid
    detail: str
    command: str = ""

    @property
    def failing(self) -> bool:
        return self.state in ("stale", "invalid")


def pages(root: Path) -> list[Path]:
    """README.md and every markdown page under docs/."""
    found = sorted((root / "docs").rglob("*.md")) if (root / "docs").is_dir() else []
    return ([root / "README.md"] if (root / "README.md").is_file() else []) + found


def check_block(block: rb.Block, page: str, root: Path) -> Status:
    stamp = block.stamp()
    if block.problems or stamp is None:
        missing = [k for k in ("commit", "sources", "fingerprint", "command") if not block.attrs.get(k)]
        why = block.problems + ([f"marker records no {', '.join(missing)}"] if missing else [])
        return Status(page, block.key, "invalid", "; ".join(why))
    if stamp.kept and not block.body.startswith(stamp.kept_line()):
        return Status(page, block.key, "invalid", f"kept, but its first line is not {stamp.kept_line()!r}",
                      stamp.command)
    try:
        now = rb.fingerprint(stamp.sources, root)
    except FileNotFoundError as err:
        return Status(page, block.key, "invalid", str(err), stamp.command)
    if now == stamp.fingerprint:
        return Status(page, block.key, "fresh", f"commit {stamp.commit}", stamp.command)
    since = rb.commits_since(stamp.commit, stamp.sources, root)
    age = f"commit {stamp.commit}" + (f", {since} later commits to its sources" if since else "")
    if not stamp.kept:
        return Status(page, block.key, "stale", f"{age}; its sources changed since", stamp.command)
    if stamp.kept_at is None:
        return Status(page, block.key, "invalid", f"{age}; kept without kept_at (the fingerprint its reason "
                      "covers): extend the reason to the changes since and keep it again (--keep)", stamp.command)
    if now != stamp.kept_at:
        return Status(page, block.key, "stale", f"{age}; its sources changed after it was kept (kept: "
                      f"{stamp.kept}): regenerate it, or extend the reason to the new change (--keep)",
                      stamp.command)
    return Status(page, block.key, "kept", f"{age}; kept: {stamp.kept}", stamp.command)


def check(root: Path = rb.ROOT) -> list[Status]:
    """The status of every generated block of the repository at ``root``."""
    out = []
    for path in pages(root):
        rel = path.relative_to(root).as_posix()
        out += [check_block(b, rel, root) for b in rb.blocks(path.read_text())]
    return out


def report(statuses: list[Status]) -> str:
    lines = []
    for s in statuses:
        lines.append(f"{s.state:<8} {s.page} {s.key}: {s.detail}")
        if s.state in ("stale", "kept") and s.command:
            lines.append(f"         regenerate: {s.command}")
    failing = [s for s in statuses if s.failing]
    counts = {k: sum(s.state == k for s in statuses) for k in ("fresh", "kept", "stale", "invalid")}
    lines.append(", ".join(f"{v} {k}" for k, v in counts.items()) + f" of {len(statuses)} blocks"
                 + (": regenerate the stale blocks, or keep them with a reason (--keep)" if failing else ""))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=rb.ROOT, help="repository root (default: this checkout)")
    parser.add_argument("--keep", nargs=3, metavar=("PAGE", "BLOCK", "REASON"),
                        help="mark a block as kept with a one-line reason (REASON '' removes the mark)")
    parser.add_argument("--stamp", nargs=2, metavar=("PAGE", "BLOCK"),
                        help="record in a block's marker the fingerprint of --sources at --commit and --command")
    parser.add_argument("--commit", help="with --stamp: the commit that generated the block")
    parser.add_argument("--sources", nargs="+", help="with --stamp: the sources the block measures")
    parser.add_argument("--command", help="with --stamp: the command that regenerates the block")
    args = parser.parse_args(argv)
    if args.stamp:
        if not (args.commit and args.sources and args.command):
            parser.error("--stamp needs --commit, --sources and --command")
        page = args.root / args.stamp[0]
        short = rb._git(args.root, "rev-parse", "--short=7", args.commit).stdout.decode().strip() or args.commit
        stamp = rb.Stamp(short, tuple(args.sources), rb.fingerprint(args.sources, args.root, args.commit),
                         args.command)
        rb.restamp(page, args.stamp[1], stamp)
        print(f"stamped {args.stamp[0]} {args.stamp[1]}: commit {short}, {stamp.fingerprint}")
        return 0
    if args.keep:
        page, key, reason = args.keep
        rb.keep(args.root / page, key, reason.strip() or None, args.root)
        print(f"{'kept' if reason.strip() else 'no longer kept'}: {page} {key}")
        return 0
    statuses = check(args.root)
    print(report(statuses))
    return 1 if any(s.failing for s in statuses) else 0


if __name__ == "__main__":
    sys.exit(main())
