"""Reports written into a run folder: results.json, JUnit XML, TAP.

Each writer takes a finished `RunResult`; none of them talks to the engine.
"""

from phalanx.report.json import read_json, to_json, write_json
from phalanx.report.junit import write_junit
from phalanx.report.tap import write_tap

__all__ = ["read_json", "to_json", "write_json", "write_junit", "write_tap"]
