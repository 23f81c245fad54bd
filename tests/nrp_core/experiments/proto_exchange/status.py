from nrp_core import *
from nrp_core.data.nrp_json import JsonRawData
from nrp_core.data.nrp_protobuf import EngineTestTestPayloadRawData


@EngineDataPack(keyword="seen", id=DataPackIdentifier("seen", "receiver"))
@EngineDataPack(keyword="label", id=DataPackIdentifier("label", "counter"))
@EngineDataPack(keyword="count", id=DataPackIdentifier("count", "json"))
@SimulationIteration(keyword="iteration")
@StatusFunction()
def status(seen, label, count, iteration):
    observation = EngineTestTestPayloadRawData()
    observation.data.CopyFrom(seen.data)
    text = JsonRawData()
    text.data["label"] = label.data.string_stream
    text.data["json_count"] = count.data["value"]
    return iteration == 3, [observation, text]
