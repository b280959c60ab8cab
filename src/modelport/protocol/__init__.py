"""Wire formats of the inference protocols, free of any web framework."""
