"""Systems of kind ``rest``: HTTP APIs read through windowed listings and written by external key."""
