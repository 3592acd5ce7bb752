"""The fleet on etcd: policy sets by scope, agents' registrations and reports, fleet commands
(replace, insert, delete, drain), drained instances, the key ring and access control
(docs/fleet.md).

Public surface::

    FleetAgent, FleetSettings   an agent's side: register, watch its policy keys, apply, report
    metric_families             its part of the agent's metrics
    Layout, Scope, parse_scope  the keys under the fleet's prefix
    Registration, Report        the JSON values of ``agents/NAME`` and ``status/NAME``
    Store, Endpoint, parse_url  the connection to etcd (aetcd); Unavailable, Compacted
"""

from dysco.runtime.fleet._agent import FleetAgent, FleetSettings, metric_families
from dysco.runtime.fleet._layout import Layout, Registration, Report, Scope, parse_scope
from dysco.runtime.fleet._store import Compacted, Endpoint, Store, Unavailable, parse_url

__all__ = [
    "Compacted",
    "Endpoint",
    "FleetAgent",
    "FleetSettings",
    "Layout",
    "Registration",
    "Report",
    "Scope",
    "Store",
    "Unavailable",
    "metric_families",
    "parse_scope",
    "parse_url",
]
