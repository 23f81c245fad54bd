"""hbp_nrp_simserver package."""
