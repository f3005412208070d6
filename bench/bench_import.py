"""The vault importer at fleet scale: prints timings, asserts nothing about speed.

    python bench/bench_import.py [--files 5000] [--db URL]

Generates N old-format task files (every id form, status and timestamp form, bodies of a
few sections, some empty keys) in a temporary vault, then times a dry run, the import (one
transaction, T-files written), and a second run (which imports nothing). The database is a
fresh SQLite file unless --db names an empty one (e.g. a PostgreSQL database).
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lobstore import open_store  # noqa: E402
from lobstore.importers.vault import import_vault  # noqa: E402

FOLDERS = {"queued": "active", "active": "active", "system-active": "active", "blocked": "active",
           "completed": "completed", "failed": "failed"}


def generate(vault: Path, count: int, seed: int = 7) -> None:
    rng = random.Random(seed)
    for folder in ("active", "completed", "failed"):
        (vault / "010-tasks" / folder).mkdir(parents=True, exist_ok=True)
    statuses = list(FOLDERS)
    for n in range(count):
        day = 1 + n % 28
        month = 1 + (n // 28) % 12
        stamp = f"2025-{month:02d}-{day:02d}"
        status = statuses[n % len(statuses)]
        if n % 10 == 0:
            legacy = f"{stamp}-widget-{n}"
        elif n % 10 == 1:
            legacy = f"task-{stamp}-inv-{rng.getrandbits(32):08x}"
        else:
            legacy = f"task-{stamp}-{n:04x}"
        hour, minute = rng.randrange(24), rng.randrange(60)
        created = (f"{stamp}T{hour:02d}:{minute:02d}:00Z", f"{stamp}T{hour:02d}:{minute:02d}:00+00:00",
                   f"{stamp} {hour:02d}:{minute:02d}:00")[n % 3]
        lines = ["---", f"id: {legacy}", f"status: {status}", f"created: {created}",
                 f"assigned_to: {'lobster-swe-' + str(n) if status not in ('queued',) else ''}",
                 f"priority: {('low', 'normal', 'high')[n % 3]}", f"tags: [bench, t{n % 5}]",
                 f"estimate: {15 * (1 + n % 8)}", f"repos: [acme/repo{n % 7}]", f"pr_number: {n}",
                 "requires_qa: false", "---"]
        body = (f"# Widget {n}: make it work — ünïcode\n\n## Objective\n\nMake widget {n} work.\n\n"
                "## Acceptance Criteria\n\n- [ ] it works\n\n## Lobster Notes\n\n## Result\n")
        path = vault / "010-tasks" / FOLDERS[status] / f"{legacy}.md"
        path.write_text("\n".join(lines) + "\n" + body, encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=5000)
    parser.add_argument("--db", help="an empty database URL (default: a fresh SQLite file)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="lobstore-bench-import-") as tmp:
        root = Path(tmp)
        vault = root / "vault"
        start = time.perf_counter()
        generate(vault, args.files)
        print(f"generated {args.files:,} task files in {time.perf_counter() - start:.2f} s")
        url = args.db or f"sqlite:///{root / 'bench.db'}"
        with open_store(url) as store:
            last = {"t": 0.0}

            def progress(stage: str, done: int, total: int) -> None:
                now = time.perf_counter()
                if done == total or now - last["t"] > 1.0:
                    last["t"] = now
                    print(f"  {stage}: {done:,} / {total:,}", file=sys.stderr, flush=True)

            for label, dry in (("dry run", True), ("import", False), ("second run (no-op)", False)):
                start = time.perf_counter()
                report = import_vault(store, vault, dry_run=dry, progress=progress)
                elapsed = time.perf_counter() - start
                counts = report.counts
                print(f"{label:<20} {elapsed:7.2f} s  {args.files / elapsed:8,.0f} files/s   "
                      f"imported {counts['imported']:,}  already present {counts['already_present']:,}  "
                      f"unreadable {counts['unreadable']}  written {len(report.written):,}")
            print(f"tasks in the store: {store.tasks.count():,}")


if __name__ == "__main__":
    main()
