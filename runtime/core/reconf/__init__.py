"""dysco.runtime.core.reconf: the reconfiguration of live sessions (paper §3), split by phase.

:class:`Reconfigurer` lists the phases in order (its bases, in :mod:`._reconfigurer`); each
phase is a module: rightRequest (:mod:`._right`), splice (:mod:`._splice`), locking
(:mod:`._lock`), the new path (:mod:`._newpath`), state export (:mod:`._export`, with the
middleboxes' side in :mod:`._migrate`), the two-path phase and cut-over (:mod:`._cutover`),
completion (:mod:`._complete`) and release at any point (:mod:`._release`).  What they share
is :mod:`._base`, including :class:`AgentView`, all a reconfiguration knows of the agent.
"""

from dysco.runtime.core.reconf._base import LOCK_TIMEOUT, PROBE_ATTEMPTS, AgentView
from dysco.runtime.core.reconf._reconfigurer import Reconfigurer

__all__ = ["LOCK_TIMEOUT", "PROBE_ATTEMPTS", "AgentView", "Reconfigurer"]
