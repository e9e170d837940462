"""combinatorial."""
