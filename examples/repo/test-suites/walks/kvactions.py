"""Actions for the walks example: a tiny key-value store as the walk state.

Written as for py-combtest, with phalanx's import. Each class is one action;
its OPTIONS are the parameters it is combined over.
"""

from phalanx.combinatorial import Action, SerialAction, logger

KEYS = ["a", "b", "c"]


class Put(Action):
    OPTIONS = KEYS

    def run(self, key, state):
        state["store"][key] = state["store"].get(key, 0) + 1


class Delete(Action):
    OPTIONS = [*KEYS, None]  # None: delete nothing

    def run(self, key, state):
        if key is not None:
            state["store"].pop(key, None)

    def should_cancel(self, walk, index):
        # Deleting a key no earlier action put is the same walk as deleting
        # nothing: prune it instead of running it.
        return self.param is not None and self.param not in [a.param for a in walk[:index]]


class Restart(SerialAction):
    """Runs once per option, after every walk finished the actions before it;
    the dict it returns is merged into the state of every walk of its branch."""

    OPTIONS = ["clean", "crash"]

    def run(self, mode, state):
        logger.info("restart (%s)", mode)
        return {"restarts": state["restarts"] + 1, "last_restart": mode}


class Check(Action):
    OPTIONS = ["counts"]

    def run(self, _, state):
        assert state["restarts"] == 1, state
        assert all(count >= 1 for count in state["store"].values()), state
