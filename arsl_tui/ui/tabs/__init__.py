"""One module per console tab."""
