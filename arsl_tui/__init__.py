"""arsl: the ArSL Ops Console — from raw sign images to a monitored production API."""

__version__ = "0.1.0"
