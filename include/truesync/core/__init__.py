"""The canonical record: mapping system values to canonical text and back, and classification."""
