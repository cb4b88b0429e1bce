"""Use cases (upload, train, gate, deploy, canary, alarms): no UI, no printing; progress as events."""
