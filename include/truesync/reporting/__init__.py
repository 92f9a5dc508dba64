"""What a run leaves for people: the JSON report, its HTML page and the index, masking of personal data."""
