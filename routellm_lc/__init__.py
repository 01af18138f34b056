"""routellm-lc."""
