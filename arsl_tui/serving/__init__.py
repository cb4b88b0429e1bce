"""The local inference gateway: the stand-in for a ModelArts real-time service behind API Gateway.

Runs in its own process (`python -m arsl_tui.serving`, started by `arsl deploy`) and imports torch
through the trainer's predictor. Modules: `app` (the ASGI app), `batching` (micro-batching and the
inference thread), `routing` (canary weights), `auth` (app codes), `ratelimit` (token buckets),
`metrics` (Prometheus text and per-version windows), `feedback`, `openapi`, `server` (the process).
Importing this package loads nothing heavy: `auth` is used by the CLI without torch.
"""
