"""Vault sync at fleet scale: prints timings, asserts nothing about speed.

    python bench/bench_sync.py [--tasks 10000] [--no-remote]

Builds a SQLite store with N tasks (mixed statuses, descriptions) and a vault cloned from a
bare local "remote", then times: the first full render + commit + push, beside git alone
doing the same (the same files copied into a fresh clone, `git add -A`, commit, push); a quiet
incremental cycle; a quiet full reconcile; and a cycle after 10 status changes.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lobstore import open_store  # noqa: E402
from lobstore.sync.cycle import VaultSync  # noqa: E402


def timed(label: str, func):
    start = time.perf_counter()
    result = func()
    elapsed = time.perf_counter() - start
    print(f"{label:<42} {elapsed:8.3f} s   tasks {result.tasks_changed:>6}  files {result.files_changed:>6}  "
          f"commit {(result.commit or '-')[:10]:<10} pushed {result.pushed}")
    assert result.error is None, result.error
    return result


def git_floor(vault: Path, folder: Path, *, push: bool) -> float:
    """Seconds git alone takes for the first render's work: the same files written into a new
    clone, then `git add -A`, commit and push. What the first render cannot beat."""
    import shutil

    folder.mkdir()
    remote, work = folder / "remote.git", folder / "work"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(remote)], check=True)
    subprocess.run(["git", "clone", "-q", str(remote), str(work)], check=True, capture_output=True)
    subprocess.run(["git", "symbolic-ref", "HEAD", "refs/heads/main"], cwd=work, check=True)
    start = time.perf_counter()
    for path in vault.iterdir():
        if path.name != ".git":
            (shutil.copytree if path.is_dir() else shutil.copy2)(path, work / path.name)
    git = ["git", "-c", "user.name=floor", "-c", "user.email=floor@localhost"]
    subprocess.run([*git, "add", "-A"], cwd=work, check=True)
    subprocess.run([*git, "commit", "-q", "--no-verify", "-m", "floor"], cwd=work, check=True)
    if push:
        subprocess.run([*git, "push", "-q", "origin", "HEAD:refs/heads/main"], cwd=work, check=True,
                       capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--no-remote", action="store_true", help="a local-only vault (no fetch/push)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="lobstore-bench-sync-") as tmp:
        root = Path(tmp)
        vault = root / "vault"
        if args.no_remote:
            subprocess.run(["git", "init", "-q", "-b", "main", str(vault)], check=True)
        else:
            subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(root / "remote.git")], check=True)
            subprocess.run(["git", "clone", "-q", str(root / "remote.git"), str(vault)], check=True,
                           capture_output=True)
            subprocess.run(["git", "symbolic-ref", "HEAD", "refs/heads/main"], cwd=vault, check=True)

        with open_store(f"sqlite:///{root / 'bench.db'}") as store:
            start = time.perf_counter()
            statuses = ["queued", "active", "completed", "failed", "blocked"]
            with store.transaction() as tx:
                for n in range(args.tasks):
                    tx.tasks.create(
                        name=f"Task {n}: make the {n % 17}th widget work", type=("swe", "research", "qa")[n % 3],
                        status=statuses[n % 5], repos=[f"acme/repo{n % 7}"], tags=["bench"],
                        description=f"Make widget {n} work.\nIt must not break widget {n - 1}.",
                        assigned_to=f"lobster-swe-t{n}" if n % 5 == 1 else None,
                    )
            print(f"{args.tasks} tasks created in {time.perf_counter() - start:.1f} s "
                  f"({'local vault' if args.no_remote else 'vault with a bare local remote'})")

            sync = VaultSync(store, vault)
            first = time.perf_counter()
            timed(f"first full render + commit{'' if args.no_remote else ' + push'}", sync.run_cycle)
            first = time.perf_counter() - first
            floor = git_floor(vault, root / "floor", push=not args.no_remote)
            print(f"{'git alone on the same files (the floor)':<42} {floor:8.3f} s   first render / floor "
                  f"{first / floor:.2f}")
            timed("quiet cycle (incremental)", sync.run_cycle)
            timed("quiet cycle (full reconcile)", lambda: sync.run_cycle(full=True))
            queued = store.tasks.list(status="queued", limit=10)
            for task in queued:
                store.tasks.update(task.id, status="active", assigned_to="lobster-bench")
            timed("cycle after 10 status changes", sync.run_cycle)
            sync.close()


if __name__ == "__main__":
    main()
