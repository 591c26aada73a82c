"""mockai's trial tests: the real service on a live listener."""
