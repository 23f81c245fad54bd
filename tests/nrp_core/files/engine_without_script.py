"""Test engine: defines no Script class."""

VALUE = 1
