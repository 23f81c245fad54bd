"""Test engine: its Script class does not derive from EngineScript."""


class Script:
    def initialize(self):
        pass
