"""Rendering the store into the Obsidian vault, and importing today's vault into the store."""
