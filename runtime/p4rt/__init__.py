"""The agent on a P4Runtime target (asyncio + grpc.aio).

Public surface::

    AgentService, Settings     the core driven by one P4Runtime connection (reconnects)
    Connection, Pipeline       the P4Runtime client: arbitration, pipeline, batched writes, stream
    ClientTls                  P4Runtime over TLS (CA, optional client certificate)
    UpdateError, NotPrimary
"""

from dysco.runtime.p4rt._client import ClientTls, Connection, NotPrimary, Pipeline, UpdateError
from dysco.runtime.p4rt._service import AgentService, Settings

__all__ = ["AgentService", "ClientTls", "Connection", "NotPrimary", "Pipeline", "Settings", "UpdateError"]
