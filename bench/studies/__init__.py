"""Studies of one paper (not the generic framework)."""
