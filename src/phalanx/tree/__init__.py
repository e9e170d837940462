"""Running Asterisk-style test trees: selection, the pool run, the console."""
