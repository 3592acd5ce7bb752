"""softswitch: the project's own P4_16 v1model target.

Public surface::

    prog = load_program("router.p4")             # front end, P4Info, generated code
    sw = Switch(prog, cpu_port=255)             # implements api.Device
    sw.write_entry("insert", TableEntry(...))
    sw.process(1, frame)                        # -> [(egress_port, frame), ...]

``prog.p4info`` is a ``p4.config.v1.P4Info``; ``prog.device_config()`` the bytes
``dysco p4c`` writes and :func:`program_from_device_config` reads back.
"""

from __future__ import annotations

from .program import P4Program, load_program, program_from_device_config
from .switch import Switch

__all__ = ["P4Program", "Switch", "load_program", "program_from_device_config"]
