"""nrp-core compatible simulation runtime in pure Python."""
