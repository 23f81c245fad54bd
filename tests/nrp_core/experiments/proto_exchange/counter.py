from nrp_core.engines.python_grpc import GrpcEngineScript
from nrp_protobuf import dump_pb2, wrappers_pb2


class Script(GrpcEngineScript):
    def initialize(self):
        self._registerDataPack("count", wrappers_pb2.Int32Value)
        self._registerDataPack("label", dump_pb2.String)
        self._getDataPack("label").string_stream = "start"

    def runLoop(self, timestep_ns):
        self._getDataPack("count").value += 1
        message = dump_pb2.String()
        message.string_stream = f"t={self._time_ns}"
        self._setDataPack("label", message)

    def reset(self):
        self._getDataPack("count").value = 0
