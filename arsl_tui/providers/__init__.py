"""Backend adapters behind the ports of `arsl_tui.domain.ports`; `arsl_tui.backends` picks them from settings."""
