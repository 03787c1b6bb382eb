"""Generated results blocks in docs/ and README.md, with markers that record the code they measured.

A benchmark writes each of its tables between two HTML comments. The begin marker records the commit,
the declared sources with their fingerprint, and the command that regenerates the block::

    <!-- bench_dd:deep:begin
    commit: 48c8a6e
    sources: gnnddm/ddm gnnddm/distributed gnnddm/models benchmarks/bench_dd.py
    fingerprint: sha256:3f2a...
    command: python3 benchmarks/bench_dd.py --regime deep --output docs/dd_benchmark.md
    -->
    ...
    <!-- bench_dd:deep:end -->

*sources* are the files whose behaviour the block measures, as the benchmark declares them; a directory
stands for every ``*.py`` and ``*.yaml`` file under it. *fingerprint* is the sha256 of their sorted
relative paths and contents when the block was generated, and *commit* is the commit they were read at
(with ``-dirty`` when they differed from it). ``benchmarks/check_results.py`` recomputes the fingerprint
from the working tree: a block whose sources changed since it was generated is stale. A block kept deliberately carries
``kept: <reason>`` in its marker with ``kept_at:``, the fingerprint of its sources when the reason was
written, and its first line shows the reason to the reader::

    > Kept from commit 48c8a6e: <reason>

A reason covers the changes made up to ``kept_at`` only: a later change to the sources makes the block
stale again, until it is regenerated or its reason is extended to the new change.
"""

from __future__ import annotations

import hashlib
import re
import subprocess
from dataclasses import dataclass, field, replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BEGIN = re.compile(r"<!-- (?P<tool>[\w.-]+):(?P<name>[\w.-]+):begin(?P<attrs>.*?)-->", re.S)
KEYS = ("commit", "sources", "fingerprint", "command", "kept", "kept_at")


@dataclass(frozen=True)
class Stamp:
    """What a begin marker records about the run that wrote its block."""

    commit: str
    sources: tuple[str, ...]
    fingerprint: str
    command: str
    kept: str | None = None
    kept_at: str | None = None  # the fingerprint of the sources when ``kept`` was written

    def marker(self, tool: str, name: str) -> str:
        lines = [f"<!-- {tool}:{name}:begin", f"commit: {self.commit}", f"sources: {' '.join(self.sources)}",
                 f"fingerprint: {self.fingerprint}", f"command: {self.command}"]
        if self.kept:
            lines.append(f"kept: {self.kept}")
        if self.kept and self.kept_at:
            lines.append(f"kept_at: {self.kept_at}")
        return "\n".join([*lines, "-->"])

    def kept_line(self) -> str:
        """The line a kept block shows first."""
        return f"> Kept from commit {self.commit}: {self.kept}"


@dataclass
class Block:
    """One generated block of a page: its marker's fields and its body (the text between the markers)."""

    tool: str
    name: str
    attrs: dict[str, str]
    body: str
    start: int  # offset of the begin marker
    end: int  # offset just past the end marker
    problems: list[str] = field(default_factory=list)

    @property
    def key(self) -> str:
        return f"{self.tool}:{self.name}"

    def stamp(self) -> Stamp | None:
        """The marker's stamp, or None when it records none (the problems say what is missing)."""
        if not all(self.attrs.get(k) for k in ("commit", "sources", "fingerprint", "command")):
            return None
        return Stamp(self.attrs["commit"], tuple(self.attrs["sources"].split()), self.attrs["fingerprint"],
                     self.attrs["command"], self.attrs.get("kept") or None, self.attrs.get("kept_at") or None)


# ------------------------------------------------------------------------------------ fingerprints
# what a directory named as a source stands for: its code and its option files (conf/ddm: the defaults a run
# takes), not its notes or data
SOURCE_SUFFIXES = (".py", ".yaml")


def _git(root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=root, capture_output=True, check=False)


def _files(src: str, root: Path, commit: str | None) -> list[str]:
    src = src.strip("/")
    if commit is not None:
        out = _git(root, "ls-tree", "-r", "--name-only", commit, "--", src)
        names = out.stdout.decode().split() if out.returncode == 0 else []
        return [n for n in names if n == src or n.endswith(SOURCE_SUFFIXES)]
    path = root / src
    if path.is_file():
        return [src]
    return [p.relative_to(root).as_posix() for p in path.rglob("*") if p.is_file() and p.name.endswith(SOURCE_SUFFIXES)]


def expand(sources, root: Path = ROOT) -> list[str]:
    """The working tree's files that ``sources`` stands for, sorted: a directory gives every ``*.py`` and
    ``*.yaml`` file under it. A source that names no file is an error: a fingerprint over nothing would never
    go stale."""
    files: set[str] = set()
    for src in sources:
        found = _files(src, root, None)
        if not found:
            raise FileNotFoundError(f"source {src!r} names no file in the working tree")
        files.update(found)
    return sorted(files)


def fingerprint(sources, root: Path = ROOT, commit: str | None = None) -> str:
    """sha256 over the sorted relative paths and contents of the files ``sources`` stands for.

    Without ``commit`` the files are the working tree's (every source must name a file); with it they are
    read from that commit (``git show``), where a source that did not exist yet counts as absent, so the
    fingerprint differs from that of any tree in which it exists.
    """
    entries: dict[str, bytes | None] = {}
    if commit is None:
        entries = {rel: (root / rel).read_bytes() for rel in expand(sources, root)}
    else:
        for src in sources:
            found = _files(src, root, commit)
            if not found:
                entries[src.strip("/")] = None
            for rel in found:
                out = _git(root, "show", f"{commit}:{rel}")
                if out.returncode != 0:
                    raise FileNotFoundError(f"{rel} at commit {commit}: {out.stderr.decode().strip()}")
                entries[rel] = out.stdout
    digest = hashlib.sha256()
    for rel in sorted(entries):
        content = entries[rel]
        if content is None:
            digest.update(rel.encode() + b"\0absent\0")
        else:
            digest.update(rel.encode() + b"\0" + str(len(content)).encode() + b"\0" + content)
    return "sha256:" + digest.hexdigest()


def head_commit(sources, root: Path = ROOT) -> str:
    """The short commit of HEAD, with ``-dirty`` when the sources differ from it (``unknown`` outside git)."""
    out = _git(root, "rev-parse", "--short=7", "HEAD")
    if out.returncode != 0:
        return "unknown"
    changed = _git(root, "status", "--porcelain", "--", *sources).stdout.strip()
    return out.stdout.decode().strip() + ("-dirty" if changed else "")


def stamp(sources, command: str, root: Path = ROOT) -> Stamp:
    """The stamp of a block generated now from the working tree: call it when the run starts."""
    sources = tuple(sources)
    return Stamp(head_commit(sources, root), sources, fingerprint(sources, root), command)


def commits_since(commit: str, sources, root: Path = ROOT) -> int | None:
    """How many commits touched ``sources`` after ``commit`` (None when git cannot say)."""
    out = _git(root, "rev-list", "--count", f"{commit.removesuffix('-dirty')}..HEAD", "--", *sources)
    return int(out.stdout) if out.returncode == 0 else None


# ------------------------------------------------------------------------------------ pages
def _attrs(text: str) -> tuple[dict[str, str], list[str]]:
    attrs, problems = {}, []
    for line in text.strip().splitlines():
        key, sep, value = line.partition(":")
        if not sep or key.strip() not in KEYS:
            problems.append(f"unreadable marker line {line.strip()!r}")
            continue
        attrs[key.strip()] = value.strip()
    return attrs, problems


def blocks(text: str) -> list[Block]:
    """Every generated block of a page, in order."""
    out = []
    for m in BEGIN.finditer(text):
        end = f"<!-- {m['tool']}:{m['name']}:end -->"
        stop = text.find(end, m.end())
        attrs, problems = _attrs(m["attrs"])
        if stop < 0:
            problems.append(f"no end marker {end}")
            body, finish = "", m.end()
        else:
            body, finish = text[m.end():stop].strip("\n"), stop + len(end)
        out.append(Block(m["tool"], m["name"], attrs, body, m.start(), finish, problems))
    return out


def find(text: str, key: str) -> Block | None:
    return next((b for b in blocks(text) if b.key == key), None)


def render(tool: str, name: str, body: str, stamp: Stamp | None) -> str:
    begin = stamp.marker(tool, name) if stamp is not None else f"<!-- {tool}:{name}:begin -->"
    if stamp is not None and stamp.kept:
        body = f"{stamp.kept_line()}\n\n{body}"
    return f"{begin}\n{body}\n<!-- {tool}:{name}:end -->"


def write_block(path: Path, tool: str, name: str, body: str, stamp: Stamp | None, title: str) -> None:
    """Replace the block ``tool:name`` of the page ``path`` (appended when absent; the page is created
    with ``title`` when missing), keeping the rest of the page."""
    text = path.read_text() if path.exists() else f"{title}\n"
    new = render(tool, name, body.strip("\n"), stamp)
    old = find(text, f"{tool}:{name}")
    if old is None:
        text = text.rstrip() + f"\n\n{new}\n"
    else:
        text = text[:old.start] + new + text[old.end:]
    path.write_text(text)


def _body_without_kept(block: Block) -> str:
    first, _, rest = block.body.partition("\n")
    return rest.lstrip("\n") if first.startswith("> Kept from commit ") else block.body


def restamp(path: Path, key: str, stamp: Stamp) -> None:
    """Give the block ``key`` of ``path`` the marker ``stamp`` (and its kept line), its body unchanged."""
    text = path.read_text()
    block = find(text, key)
    if block is None:
        raise KeyError(f"{path}: no block {key}")
    tool, name = key.split(":", 1)
    path.write_text(text[:block.start] + render(tool, name, _body_without_kept(block), stamp) + text[block.end:])


def keep(path: Path, key: str, reason: str | None, root: Path = ROOT) -> None:
    """Mark the block ``key`` of ``path`` as kept for ``reason`` (None: no longer kept), at the fingerprint
    its sources have now in the working tree at ``root``: the reason covers the changes made until now."""
    block = find(path.read_text(), key)
    if block is None:
        raise KeyError(f"{path}: no block {key}")
    current = block.stamp()
    if current is None:
        raise ValueError(f"{path}: block {key} records no commit and fingerprint to keep")
    kept_at = fingerprint(current.sources, root) if reason else None
    restamp(path, key, replace(current, kept=reason or None, kept_at=kept_at))
