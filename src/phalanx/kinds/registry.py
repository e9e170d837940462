"""The built-in case kinds. Importing this module registers them."""

from phalanx.kinds.base import register
from phalanx.kinds.executable import DECLARATIVE, EXECUTABLE
from phalanx.kinds.python import PYTHON
from phalanx.kinds.scripts import SCRIPTS
from phalanx.kinds.walks import WALKS

register(SCRIPTS)
register(PYTHON)
register(WALKS)
register(EXECUTABLE)
register(DECLARATIVE)
