"""Sum up the stacks ``bench/cpu_profile`` wrote: each function's share of a process's CPU
samples, including what it called. ``python bench/cpu_profile/top.py DIR [N]``."""

from __future__ import annotations

import collections
import sys
from pathlib import Path


def shares(path: Path) -> tuple[int, list[tuple[str, int]]]:
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        samples = int(count)
        total += samples
        for name in set(stack.split(";")):
            inclusive[name] += samples
    return total, inclusive.most_common()


def main() -> None:
    folder, top = Path(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 25
    for path in sorted(folder.glob("*.txt")):
        total, ranked = shares(path)
        print(f"\n{path.stem}: {total} samples")
        below = [(name, n) for name, n in ranked if n < total]  # not the frames of every sample
        for name, samples in below[:top]:
            print(f"  {100 * samples / max(total, 1):5.1f}%  {name}")


if __name__ == "__main__":
    main()
