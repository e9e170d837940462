"""Argument types for the commands: a value argparse refuses is a usage
error (exit 2) before anything starts, not a run that ends in a misleading
message."""

from __future__ import annotations

import argparse


def seconds(text: str) -> float:
    """A duration in seconds, more than zero."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be more than 0 seconds, not {text}")
    return value


def count(text: str) -> int:
    """A whole number, at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, not {text}")
    return value


def provider(text: str) -> str:
    """The name of an installed provider (phalanx's own or a plug-in's)."""
    from phalanx.load.cluster import provider_problem

    problem = provider_problem(text)
    if problem is not None:
        raise argparse.ArgumentTypeError(problem)
    return text
