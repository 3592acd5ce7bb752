"""Dysco: dynamic service chaining of TCP sessions, offloaded to P4.

Subpackages (each a top-level folder of the repository, linked in here):
``dysco.compiler`` (policy language), ``dysco.runtime`` (the agent),
``dysco.softswitch`` (the embedded P4 target), ``dysco.bmv2`` (launching targets),
``dysco.testbed`` (namespace testbed and demo: networks built around agents).
"""

__version__ = "0.1.0"
