"""Declarative tests: a `test-config.yaml` with `test-modules:` instead of a
`run-test` program (the Asterisk pluggable-module contract).

This package holds the plain logic of such a test: events, event/action
sets, counts and fail tokens. The loader checks a tree's module configs
against it; the runtime that starts processes and feeds them through it runs
on the host (`phalanx.host.declarative`).
"""
