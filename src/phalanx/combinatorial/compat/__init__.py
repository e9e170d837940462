"""py-combtest's module names over phalanx's combinatorial library.

A py-combtest user changes only import lines: ``combtest.<module>`` becomes
``phalanx.combinatorial.compat.<module>`` for ``action``, ``walk``, ``runner``,
``replay``, ``encode``, ``utils``, ``central_logger`` and ``bootstrap``. These
modules adapt names, return shapes and the few semantics py-combtest code relies
on; the walks themselves run on phalanx's executors. What differs, and why, is in
docs/compat.md ("py-combtest").
"""
