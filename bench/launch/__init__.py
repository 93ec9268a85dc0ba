"""Running a suite: local processes, a Ray cluster, GPU placement."""
