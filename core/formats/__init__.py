"""Queue formats, one package each, and the registry that finds them."""
