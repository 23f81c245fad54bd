"""Stand-in for nrp-core's ``datatransfer_grpc_engine``: JSON datapacks over MQTT and files."""

from nrp_core.engines.datatransfer.server import DataTransferServer, data_topic

__all__ = ["DataTransferServer", "data_topic"]
