"""phalanx: system tests across a fleet of machines, in lockstep.

Kept free of imports: `phalanx-sync` and the agent import submodules of this
package on every stage, and start-up time is overhead on every barrier.
"""

__version__ = "0.1.0"
