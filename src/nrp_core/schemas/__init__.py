"""JSON Schema (draft-07) files of simulation_config.json, one per sub-schema."""
