"""Start-up cost: ``import skilldistill`` and ``skilldistill --help``, this tree against an
earlier commit, measured side by side (alternating runs, so the machine's load falls on both).

    python bench/import_time.py                  # against cbbc1c0, the commit before the restructure
    python bench/import_time.py --before HEAD~5 --runs 15

Each run is a fresh interpreter (``python -c "import skilldistill"``, ``python -m
skilldistill.cli --help``) with ``PYTHONPATH`` pointing at the tree's ``src``; the earlier
commit is checked out into a temporary git worktree. Prints medians and the ratio
after/before.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
COMMANDS = {
    "import skilldistill": ["-c", "import skilldistill"],
    "skilldistill --help": ["-m", "skilldistill.cli", "--help"],
}


def timed(src: Path, args: list[str]) -> float:
    env = {**os.environ, "PYTHONPATH": str(src), "COLUMNS": "120"}
    start = time.perf_counter()
    subprocess.run([sys.executable, *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   check=True, cwd=tempfile.gettempdir())
    return time.perf_counter() - start


def measure(trees: dict[str, Path], runs: int) -> dict[tuple[str, str], list[float]]:
    samples: dict[tuple[str, str], list[float]] = {(t, c): [] for t in trees for c in COMMANDS}
    for _ in range(runs):
        for command, args in COMMANDS.items():
            for tree, src in trees.items():  # alternate: a load spike hits both sides
                samples[(tree, command)].append(timed(src, args))
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", default="cbbc1c0", help="the earlier commit (default: before the restructure)")
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        worktree = Path(tmp) / "before"
        subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", "-q", str(worktree), args.before],
                       check=True)
        try:
            trees = {"before": worktree / "src", "after": REPO / "src"}
            for src in trees.values():  # compile the bytecode once, outside the timing
                timed(src, COMMANDS["skilldistill --help"])
            samples = measure(trees, args.runs)
        finally:
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(worktree)], check=False)
    print(f"{'command':<22} {'before (s)':>11} {'after (s)':>10} {'after/before':>13}   (median of {args.runs}, "
          f"before = {args.before})")
    for command in COMMANDS:
        before = statistics.median(samples[("before", command)])
        after = statistics.median(samples[("after", command)])
        print(f"{command:<22} {before:>11.3f} {after:>10.3f} {after / before:>12.2f}x")


if __name__ == "__main__":
    main()
