"""Datapack payload families; ``nrp_core.data.nrp_json`` holds the JSON datapacks."""
