"""hbp_nrp_storage package."""
