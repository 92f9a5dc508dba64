"""Data quality with Great Expectations: the checks on each batch, a run's health, Data Docs.

The only package that imports Great Expectations; DAG parsing never reaches it.
"""
