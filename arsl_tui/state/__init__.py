"""Shared state: the SQLite file under `$ARSL_HOME` (both backends keep their local records there), its
migrations, and the stores of the components that keep state in it."""
