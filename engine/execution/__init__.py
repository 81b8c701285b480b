"""Running runs: the executor, the launcher, the warm worker."""
