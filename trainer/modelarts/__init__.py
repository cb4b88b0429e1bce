"""ModelArts serving entry for an exported model package (`python -m trainer.modelarts.serve`)."""
