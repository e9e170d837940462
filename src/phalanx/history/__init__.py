"""Operation histories and the checkers that judge them.

A history is what clients did to a system under test: each operation's
invocation and its outcome (`ok`, `fail`: it did not happen, `info`: it may
have happened). The checkers (`register`, `set`, `counter`) are pure: they
take operations and return a verdict, with the smallest window of operations
that cannot be ordered when the history is invalid. Reading files lives in
`formats`, the `phalanx check` command in `cli`.
"""
