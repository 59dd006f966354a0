"""Runtime: a planned launch -> app cgroup, providers, container, wait, teardown; no resolving."""
