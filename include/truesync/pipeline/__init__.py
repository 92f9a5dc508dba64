"""One run, stage by stage: window, extract, classify and load (with holds and reconciliation), finalize."""
