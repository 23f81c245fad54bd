"""hbp_nrp_backend package."""
