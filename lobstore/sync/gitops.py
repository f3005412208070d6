"""The vault's git repository: pull with rebase, commit, push, and stale locks.

Never force-pushes. When our commit and someone else's cannot be rebased together, ours is
set aside under ``refs/lobstore/discarded/`` (so nothing is lost) and the remote is taken; the
caller then renders the database again on top of it.

Uncommitted edits a person made in the working copy are set aside in a stash around a rebase
and re-applied after it. One the remote contradicts is never merged with conflict markers: the
file takes the remote's version and the person's is kept whole beside it as ``NAME.conflict.md``
(listed in :attr:`GitVault.conflicts`); no stash stays behind.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path

import git
import psutil

from ..clock import utcnow
from ..errors import ConfigurationError, LobstoreError

log = logging.getLogger(__name__)

LOCK_FILES = ("index.lock", "HEAD.lock")
DEFAULT_LOCK_STALE_AFTER = 600.0  # seconds; a git command holding a lock this long is gone
STAGE_FOLDERS_OVER = 2000  # paths in one commit past which their folders are staged whole
CONFLICT_MARK = ".conflict"  # T1.md -> T1.conflict.md: a person's edit the remote contradicted
_REJECTED_MARKERS = ("[rejected]", "non-fast-forward", "fetch first", "failed to push some refs")


class SyncError(LobstoreError):
    """A sync cycle could not finish; the next cycle tries again."""


class VaultBusyError(SyncError):
    """A git lock in the vault is held (or too fresh to call stale): retry later."""


class PushRejectedError(SyncError):
    """The remote refused our push because it moved on."""


class GitVault:
    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        remote: str = "origin",
        author_name: str = "lobstore sync",
        author_email: str = "lobstore-sync@localhost",
        lock_stale_after: float = DEFAULT_LOCK_STALE_AFTER,
    ) -> None:
        self.path = Path(path).expanduser()
        if not self.path.is_dir():
            raise ConfigurationError(f"vault {str(self.path)!r} does not exist or is not a folder")
        try:
            self.repo = git.Repo(self.path)
        except git.InvalidGitRepositoryError:
            raise ConfigurationError(
                f"vault {str(self.path)!r} is not a git repository: clone the vault there "
                "(or run `git init` for a local-only vault)"
            ) from None
        if self.repo.bare or Path(self.repo.working_tree_dir or "").resolve() != self.path.resolve():
            raise ConfigurationError(
                f"vault {str(self.path)!r} must be the top folder of a git working tree "
                f"(the repository's top is {self.repo.working_tree_dir!r})"
            )
        self.path = self.path.resolve()
        self.remote = remote
        self.lock_stale_after = lock_stale_after
        self.conflicts: list[str] = []  # copies of uncommitted edits that could not be re-applied
        # Author and committer both: the commit says who made it, whoever runs the daemon.
        self.repo.git.update_environment(
            GIT_AUTHOR_NAME=author_name, GIT_AUTHOR_EMAIL=author_email,
            GIT_COMMITTER_NAME=author_name, GIT_COMMITTER_EMAIL=author_email,
        )

    # -- facts -------------------------------------------------------------------------------
    @property
    def branch(self) -> str:
        try:
            return self.repo.active_branch.name
        except TypeError:
            raise SyncError(f"vault {self.path} is on a detached HEAD: check out a branch") from None

    @property
    def has_remote(self) -> bool:
        return any(r.name == self.remote for r in self.repo.remotes)

    @property
    def upstream(self) -> str:
        return f"{self.remote}/{self.branch}"

    def head(self) -> str | None:
        try:
            return self.repo.git.rev_parse("--verify", "-q", "HEAD")
        except git.GitCommandError:
            return None  # a fresh repository without commits

    def _remote_head(self) -> str | None:
        try:
            return self.repo.git.rev_parse("--verify", "-q", f"refs/remotes/{self.upstream}")
        except git.GitCommandError:
            return None

    def commits_ahead(self) -> int:
        """Local commits the remote does not have yet (all of them if it has no branch)."""
        if self.head() is None:
            return 0
        spec = "HEAD" if self._remote_head() is None else f"{self.upstream}..HEAD"
        return int(self.repo.git.rev_list("--count", spec))

    # -- locks -------------------------------------------------------------------------------
    def clear_stale_locks(self) -> list[str]:
        """Remove lock files a dead git command left behind; VaultBusyError when a lock may
        still be in use (a git process runs in the vault, or the lock is younger than
        ``lock_stale_after``)."""
        git_dir = Path(self.repo.git_dir)
        removed = []
        for name in LOCK_FILES:
            lock = git_dir / name
            try:
                age = time.time() - lock.stat().st_mtime
            except FileNotFoundError:
                continue
            running = git_processes_in(self.path)
            if running is None:
                raise VaultBusyError(
                    f"{lock} exists and this system cannot tell whether a git process holds it: "
                    "remove it by hand if no git command is running"
                )
            if running:
                raise VaultBusyError(f"{lock} is held by a running git process (pid {running[0]}); will retry")
            if age < self.lock_stale_after:
                raise VaultBusyError(
                    f"{lock} is {age:.0f}s old (stale after {self.lock_stale_after:.0f}s); will retry"
                )
            lock.unlink(missing_ok=True)
            log.warning("removed stale %s (%.0fs old, no git process in the vault)", lock, age)
            removed.append(name)
        return removed

    # -- pull / commit / push ----------------------------------------------------------------
    def fetch(self) -> bool:
        """Fetch the branch; False when the remote does not have it yet."""
        try:
            self.repo.git.fetch(self.remote, self.branch)
        except git.GitCommandError as exc:
            if "couldn't find remote ref" in str(exc).lower():
                return False
            raise SyncError(f"git fetch {self.remote} failed: {_first_line(exc)}") from exc
        return True

    def pull(self) -> bool:
        """Fetch and rebase onto the remote. False when the rebase conflicted (it was
        aborted, leaving the vault as before): the caller takes the remote and re-renders."""
        if not self.has_remote or not self.fetch():
            return True
        return self.rebase_onto_remote()

    def rebase_onto_remote(self) -> bool:
        remote_head = self._remote_head()
        if remote_head is None:
            return True
        if self.head() is None:  # nothing local yet: start from the remote
            # (`reset --keep` needs a HEAD; a clone made while the remote was empty has none —
            # another replica's vault pushed first.) Refuses to overwrite untracked files.
            self.repo.git.checkout("-B", self.branch, remote_head)
            return True
        upstream = self.upstream  # HEAD is detached while a rebase stops: name it now
        stash = self._stash("lobstore sync: before rebasing")
        try:
            self.repo.git.rebase(remote_head)
        except git.GitCommandError as exc:
            if not self._rebase_in_progress():
                self._unstash(stash)
                raise SyncError(f"git rebase onto {upstream} failed: {_first_line(exc)}") from exc
            log.warning("rebase onto %s conflicted; aborting it: %s", upstream, _first_line(exc))
            self.repo.git.rebase("--abort")
            self._unstash(stash)  # onto the commit it was made from: always clean
            return False
        self._unstash(stash)
        return True

    def take_remote(self) -> str | None:
        """Reset the branch to the remote. Our commits are kept under a ref, and uncommitted
        edits in the working copy go through the stash; returns the ref name."""
        head = self.head()
        ref = None
        if head is not None and self.commits_ahead():
            ref = f"refs/lobstore/discarded/{utcnow().strftime('%Y%m%dT%H%M%SZ')}-{head[:12]}"
            self.repo.git.update_ref(ref, head)
            log.warning("taking %s; our commit %s is kept as %s", self.upstream, head[:12], ref)
        stash = self._stash("lobstore sync: before taking the remote")
        self.repo.git.reset("--hard", f"refs/remotes/{self.upstream}")
        self._unstash(stash)
        return ref

    # -- a person's uncommitted edits ----------------------------------------------------------
    def _stash(self, message: str) -> str | None:
        """Set uncommitted edits (untracked files too) aside; the stash commit, None if clean."""
        if not self.repo.is_dirty(untracked_files=True):
            return None
        self.repo.git.stash("push", "--include-untracked", "-m", message)
        return self.repo.git.rev_parse("--verify", "-q", "stash@{0}")

    def _unstash(self, stash: str | None) -> None:
        """Re-apply a stash and drop it. A file whose edit conflicts keeps the committed version
        and the person's whole file is written beside it (never conflict markers); when git
        cannot apply the stash at all, every file of it is kept that way."""
        if stash is None:
            return
        try:
            self.repo.git.stash("apply", "--quiet", stash)
        except git.GitCommandError as exc:
            unmerged = _nul_list(self.repo.git.diff("--name-only", "--diff-filter=U", "-z"))
            if unmerged:
                self._take_committed(unmerged)
            else:  # nothing applied (e.g. an untracked file is now tracked): keep every file
                self.repo.git.reset("--hard", "-q")
                unmerged = self._stashed_paths(stash)
            kept = [copy for path in unmerged if (copy := self._keep_beside(path, stash))]
            log.warning("uncommitted vault edits conflict with the remote (%s); kept as %s",
                        _first_line(exc), ", ".join(kept))
        self.repo.git.reset("-q")  # edits stay in the working copy, unstaged, as they were
        self._drop(stash)

    def _take_committed(self, paths: list[str]) -> None:
        """The committed side of conflicted files, no markers: HEAD's version, or no file
        where HEAD has none (the remote removed it)."""
        in_head = set(_nul_list(self.repo.git.ls_tree("-r", "-z", "--name-only", "HEAD", "--", *paths)))
        if kept := [path for path in paths if path in in_head]:
            self.repo.git.checkout("HEAD", "--", *kept)
        if gone := [path for path in paths if path not in in_head]:
            self.repo.git.rm("-q", "--cached", "--ignore-unmatch", "--", *gone)
            for path in gone:
                (self.path / path).unlink(missing_ok=True)

    def _stashed_paths(self, stash: str) -> list[str]:
        paths = _nul_list(self.repo.git.diff("--name-only", "--no-renames", "-z", f"{stash}^1", stash))
        if self.repo.git.rev_parse("--verify", "-q", f"{stash}^3", with_exceptions=False):
            paths += _nul_list(self.repo.git.ls_tree("-r", "-z", "--name-only", f"{stash}^3"))
        return sorted(set(paths))

    def _keep_beside(self, path: str, stash: str) -> str | None:
        """Write the person's version of ``path`` (from the stash) as ``NAME.conflict.md``."""
        for commit in (stash, f"{stash}^3"):
            blob = self.repo.git.rev_parse("--verify", "-q", f"{commit}:{path}", with_exceptions=False)
            if blob:
                break
        else:
            return None  # removed by the person: nothing to keep
        copy = _free_name(self.path, path)
        data = self.repo.git.cat_file("blob", blob, stdout_as_string=False, strip_newline_in_stdout=False)
        target = self.path / copy
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        self.conflicts.append(copy)
        return copy

    def _drop(self, stash: str) -> None:
        for line in self.repo.git.stash("list", "--format=%gd %H").splitlines():
            name, _, sha = line.partition(" ")
            if sha == stash:
                self.repo.git.stash("drop", "-q", name)
                return

    def commit(self, paths: Iterable[str], message: str) -> str | None:
        """Stage ``paths`` (written, created, moved or removed) and commit them; None when
        nothing staged differs from HEAD."""
        paths = sorted(set(paths))
        if not paths:
            return None
        # One git process for any number of paths; -A stages a moved file's old path as gone,
        # which git records as the rename `git mv` would have made.
        if len(paths) > STAGE_FOLDERS_OVER:
            # Matching tens of thousands of named paths costs git twice the time of staging
            # their few folders; conflict copies (a person's, see _keep_beside) stay out.
            spec = sorted({path.rpartition("/")[0] or path for path in paths})  # top-level files by name
            self.repo.git.add("-A", "--", *spec, f":(exclude,glob)**/*{CONFLICT_MARK}*")
        else:
            with tempfile.NamedTemporaryFile("w", encoding="utf-8", suffix=".paths", delete=False) as f:
                f.write("\0".join(paths))
            try:
                self.repo.git.add("-A", f"--pathspec-from-file={f.name}", "--pathspec-file-nul")
            finally:
                os.unlink(f.name)
        if self.head() is not None:
            try:
                self.repo.git.diff("--cached", "--quiet")
                return None
            except git.GitCommandError:
                pass  # exit 1: there are staged changes
        self.repo.git.commit("-q", "--no-verify", "-m", message)
        return self.head()

    def push(self) -> bool:
        """Push the branch if we have commits the remote lacks; PushRejectedError when the
        remote moved on. Never forced."""
        if not self.has_remote or not self.commits_ahead():
            return False
        try:
            self.repo.git.push(self.remote, f"HEAD:refs/heads/{self.branch}")
        except git.GitCommandError as exc:
            if any(marker in str(exc) for marker in _REJECTED_MARKERS):
                raise PushRejectedError(f"push to {self.upstream} rejected: the remote moved on") from exc
            raise SyncError(f"git push to {self.remote} failed: {_first_line(exc)}") from exc
        return True

    def _rebase_in_progress(self) -> bool:
        git_dir = Path(self.repo.git_dir)
        return (git_dir / "rebase-merge").exists() or (git_dir / "rebase-apply").exists()

    def close(self) -> None:
        self.repo.close()


def git_processes_in(folder: Path) -> list[int] | None:
    """Pids of git processes working in ``folder`` (their working directory inside it), through
    psutil (Linux, macOS, Windows, the BSDs), or None when this system shows no other process
    at all. ``git cat-file --batch`` helpers that GitPython keeps open only read objects and
    never hold a lock, so they do not count; processes we may not look at are passed over."""
    folder = folder.resolve()
    found = []
    seen_any = False
    for process in psutil.process_iter(["name", "cmdline"]):
        if process.pid == os.getpid():
            continue
        seen_any = True
        cmdline = process.info.get("cmdline") or []
        name = process.info.get("name") or (os.path.basename(cmdline[0]) if cmdline else "")
        if not name.startswith("git") or "cat-file" in cmdline:
            continue
        try:
            cwd = Path(process.cwd())
        except (psutil.Error, OSError):  # gone meanwhile, or not ours to look at
            continue
        if cwd == folder or folder in cwd.parents:
            found.append(process.pid)
    return sorted(found) if seen_any else None


def _nul_list(output: str) -> list[str]:
    return [item for item in output.split("\0") if item]


def _free_name(root: Path, path: str) -> str:
    """``a/T1.md`` -> ``a/T1.conflict.md`` (``T1.conflict-2.md``, ... when that exists)."""
    folder, _, name = path.rpartition("/")
    stem, dot, suffix = name.rpartition(".") if "." in name.lstrip(".") else (name, "", "")
    for n in range(1, 1000):
        copy = f"{stem}{CONFLICT_MARK}{'' if n == 1 else f'-{n}'}{dot}{suffix}"
        rel = f"{folder}/{copy}" if folder else copy
        if not (root / rel).exists():
            return rel
    raise SyncError(f"too many conflict copies of {path}: resolve some by hand")


def _first_line(exc: git.GitCommandError) -> str:
    text = (exc.stderr or str(exc)).strip()
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return "; ".join(lines[-3:]) if lines else str(exc)
