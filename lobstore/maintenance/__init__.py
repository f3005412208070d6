"""Whole-database work an operator runs: copying a store into another database (copy), backups
and restores (backup, restore, archive, checksum, pgtools) and scheduled backups (scheduled)."""
