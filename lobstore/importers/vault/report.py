"""What a vault import did, file by file: ``to_dict()`` for ``--json``, ``format_text()`` for a
person."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from ..report import ImportReportBase, section

# The report's lists of files, in the order the JSON form gives them.
FILE_LISTS = ("imported", "already_present", "changed_since_import", "repaired", "templates",
              "not_tasks", "unreadable", "duplicates", "write_errors")

@dataclass
class FileEntry:
    """One file and what the import did with it. Paths are relative to the vault."""

    path: str
    legacy_id: str | None = None
    task: str | None = None  # the ref (T42); None in a dry run
    name: str | None = None
    status: str | None = None
    target: str | None = None  # the T-file
    reason: str | None = None
    line: int | None = None
    notes: list[str] = field(default_factory=list)


@dataclass
class VaultImportReport(ImportReportBase):
    """What ``import_vault`` did (or, in a dry run, would do), file by file."""

    vault: str
    dry_run: bool = False
    imported: list[FileEntry] = field(default_factory=list)
    already_present: list[FileEntry] = field(default_factory=list)
    changed_since_import: list[FileEntry] = field(default_factory=list)
    repaired: list[FileEntry] = field(default_factory=list)  # T-files a failed earlier run missed
    templates: list[FileEntry] = field(default_factory=list)
    not_tasks: list[FileEntry] = field(default_factory=list)
    unreadable: list[FileEntry] = field(default_factory=list)
    duplicates: list[FileEntry] = field(default_factory=list)  # one old id in several files
    write_errors: list[FileEntry] = field(default_factory=list)
    store_files: int = 0  # T-files and pages the store itself wrote: not old tasks
    seconds: float = 0.0

    @property
    def disagreements(self) -> list[FileEntry]:
        """Imported files whose status and folder disagreed (the folder won)."""
        return [e for e in self.imported if any(n.startswith("status ") for n in e.notes)]

    @property
    def counts(self) -> dict[str, int]:
        out = {name: len(getattr(self, name)) for name in FILE_LISTS}
        out["status_disagreements"] = len(self.disagreements)
        out["store_files"] = self.store_files
        return out

    @property
    def written(self) -> list[str]:
        """The T-files this run wrote."""
        if self.dry_run:
            return []
        failed = {id(e) for e in self.write_errors}
        return sorted(e.target for e in (*self.imported, *self.repaired) if e.target and id(e) not in failed)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"vault": self.vault, "dry_run": self.dry_run, "counts": self.counts,
                               "seconds": round(self.seconds, 3)}
        for name in FILE_LISTS:
            out[name] = [{k: v for k, v in asdict(e).items() if v not in (None, [])}
                         for e in getattr(self, name)]
        return out

    def lines(self) -> list[str]:
        """The summary a person reads at the end of ``lobstore import-vault``."""
        lines: list[str] = []
        verb = "would import" if self.dry_run else "imported"
        section(lines, verb.capitalize(), self.imported, lambda e: (
            f"{e.task or '-':>6}  {e.path}  ({e.status}) {e.name}"
            + "".join(f"\n          note: {n}" for n in e.notes)))
        section(lines, "Repaired (T-file written again)", self.repaired, lambda e: f"{e.task}  {e.target}")
        section(lines, "Changed since import (not re-imported)", self.changed_since_import,
                lambda e: f"{e.path}: {e.reason}")
        section(lines, "Unreadable", self.unreadable, lambda e: f"{e.path}" + (f":{e.line}" if e.line else "") + f": {e.reason}")
        section(lines, "Same old id in several files (none of them imported)", self.duplicates,
                lambda e: f"{e.path}: {e.reason}")
        section(lines, "Not task files", self.not_tasks, lambda e: f"{e.path}: {e.reason}")
        section(lines, "Skipped templates", self.templates, lambda e: f"{e.path}: {e.reason}")
        section(lines, "Could not write", self.write_errors, lambda e: f"{e.target}: {e.reason}")
        c = self.counts
        lines.append(
            f"{'Dry run: ' if self.dry_run else ''}{c['imported']} {verb}, {c['already_present']} already present, "
            f"{c['changed_since_import']} changed since import, {c['templates']} templates skipped, "
            f"{c['unreadable']} unreadable, {c['duplicates']} duplicates, {c['not_tasks']} not tasks, "
            f"{c['status_disagreements']} status/folder disagreements"
            + (f", {c['repaired']} repaired" if c["repaired"] else "")
            + (f", {c['write_errors']} NOT WRITTEN" if c["write_errors"] else "")
            + f" ({self.seconds:.1f}s)"
        )
        if self.dry_run:
            lines.append("Nothing was written. Run again without --dry-run to import.")
        elif self.write_errors:
            lines.append("The database has every imported task; run the import again to write the missing files.")
        elif self.written:
            lines.append(f"{len(self.written)} new files under the tasks folder: review and commit them "
                         f"(git -C {self.vault} add -A && git -C {self.vault} commit). The old files are unchanged.")
        return lines

