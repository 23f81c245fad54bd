from nrp_core import *
from nrp_core.data.nrp_json import JsonDataPack
from nrp_core.data.nrp_protobuf import WrappersInt32ValueDataPack


@EngineDataPack(keyword="count", id=DataPackIdentifier("count", "counter"))
@TransceiverFunction("receiver")
def forward(count):
    forwarded = WrappersInt32ValueDataPack("forwarded", "receiver")
    forwarded.data.value = count.data.value
    as_json = JsonDataPack("count", "json")
    as_json.data["value"] = count.data.value
    return [forwarded, as_json]
