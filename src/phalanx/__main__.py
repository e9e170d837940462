"""`python -m phalanx`."""

from phalanx.cli import main

main()
