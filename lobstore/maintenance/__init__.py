"""Whole-database work an operator runs: copying a store into another database."""
