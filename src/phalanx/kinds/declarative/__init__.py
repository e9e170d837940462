"""Declarative tests: a `test-config.yaml` with `test-modules:` instead of a
`run-test` program (the Asterisk pluggable-module contract).

A test object starts processes from its config section and drives them;
modules subscribe to what happens (events) and act on it. The event matching,
counts and fail tokens are plain logic (`counts`, `events`, `tokens`,
`eventaction`); only `testobject` touches processes and time. The test runs
as its own program (`python -m phalanx.kinds.declarative TEST_DIR`), so the
executable runner gives it a process group, a sandbox and timeouts like any
`run-test`, and users' module classes are imported there, never in the runner.
"""
