"""Pure rules and records: standard library only (no Textual, SDK or torch)."""
