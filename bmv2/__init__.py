"""Launching a P4 target: bmv2's simple_switch_grpc where installed, else the softswitch.

``Target(TargetSpec(program, ports))`` builds the program, starts the target with
simple_switch_grpc's flags, waits for P4Runtime and pushes the pipeline;
``dysco target up|down`` does the same from the shell.  ``links`` makes veth pairs.
"""

from dysco.bmv2.launcher import Target, TargetError, TargetSpec, build, choose_kind, find_p4c, switch_argv

__all__ = ["Target", "TargetError", "TargetSpec", "build", "choose_kind", "find_p4c", "switch_argv"]
