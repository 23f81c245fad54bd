from nrp_core.engines.python_grpc import GrpcEngineScript
from nrp_protobuf import dump_pb2, enginetest_pb2, wrappers_pb2


class Script(GrpcEngineScript):
    def initialize(self):
        self._registerDataPack("forwarded", wrappers_pb2.Int32Value)
        self._registerDataPack("command", dump_pb2.String)
        self._registerDataPack("seen", enginetest_pb2.TestPayload)

    def runLoop(self, timestep_ns):
        seen = self._getDataPack("seen")
        seen.integer = self._getDataPack("forwarded").value
        seen.str = self._getDataPack("command").string_stream
