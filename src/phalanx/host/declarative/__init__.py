"""The declarative test runtime: a `test-config.yaml` with `test-modules:`
run as its own program (`python -m phalanx.host.declarative TEST_DIR`), so
the executable runner gives it a process group, a sandbox and timeouts like
any `run-test`, and users' module classes are imported there, never in the
runner.

The test object starts processes from its config section and drives them;
modules subscribe to what happens (events) and act on it. The rules those
modules follow (event matching, counts, fail tokens) are plain logic and live
with the kind, in `phalanx.kinds.declarative`, where the loader checks a
tree's configs against them before anything runs.
"""
