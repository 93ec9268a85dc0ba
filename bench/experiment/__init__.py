"""From a suite to planned runs: the plan, the tuning protocol, preflight, dry-run, estimate, migration, and the execution of one planned run."""
