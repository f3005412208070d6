"""The task lifecycle clock: claims, leases, timeouts and orphan recovery (README, "The lifecycle clock")."""
