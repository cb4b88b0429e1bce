"""Test-only name resolution for the Huawei rehearsal: `*.myhuaweicloud.com` → 127.0.0.1, nothing else.

Why: the `arsl` processes a rehearsal starts must reach the OBS stand-in exactly as production reaches OBS,
by `https?://<bucket>.obs.<region>.myhuaweicloud.com` (virtual-host addressing, OBS's own signature), which
the OBS stand-in insists on. An `obs_endpoint` of `http://127.0.0.1:<port>` would switch the adapter to
path-style addressing and AWS v4 signing (its rule for IP endpoints), i.e. test a construction production
never uses. So the configuration names the real host form with the stand-in's port, and this hook makes
those names resolve to the loopback address.

How it stays test-only: Python imports `sitecustomize` at start-up from `sys.path`; this folder is on
`sys.path` only when the rehearsal puts it on `PYTHONPATH` (the port file's `env`), and the hook does
nothing unless `ARSL_REHEARSAL_LOOPBACK_DNS=1` is set too. No production code or default changes, and a
name under the suffix can never reach a real address while it is active.
"""

from __future__ import annotations

import os
import socket
from typing import Any

_SUFFIX = ".myhuaweicloud.com"

if os.environ.get("ARSL_REHEARSAL_LOOPBACK_DNS") == "1":
    _original = socket.getaddrinfo

    def _loopback_getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode("ascii") if isinstance(host, bytes) else host
        if isinstance(name, str) and name.lower().rstrip(".").endswith(_SUFFIX):
            name = "127.0.0.1"
        return _original(name, port, *args, **kwargs)

    socket.getaddrinfo = _loopback_getaddrinfo
