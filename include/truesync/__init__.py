"""truesync: keep every change in sync between business systems, and say what is wrong."""
