"""Node execution policies, spelled as nrp-core's Python module spells them.

Experiment files write ``node_policies.functional_node.exec_policy.always``,
``node_policies.input_node.msg_cache.clear`` or ``node_policies.input_node.msg_publish.all``; like
nrp-core's exported enum values, the members are also reachable one level up
(``node_policies.input_node.clear``).
"""

from __future__ import annotations

import enum

__all__ = ["ExecMode", "node_policies"]


class ExecMode(enum.Enum):
    """Which nodes a graph cycle executes: all of them, or only those feeding due output nodes."""

    ALL_NODES = "AllNodes"
    OUTPUT_DRIVEN = "OutputDriven"


class _MsgCache(enum.Enum):
    """What an input node publishes for a port that got no message in the last cycle."""

    clear = "CLEAR_CACHE"  # publish None and forget the cached messages
    keep = "KEEP_CACHE"  # publish nothing: connected nodes keep the last value


class _MsgPublish(enum.Enum):
    """What an input node publishes for a port with new messages."""

    last = "LAST"  # the last message
    all = "ALL"  # the list of all messages received since the last cycle


class _ExecPolicy(enum.Enum):
    """When a functional node runs."""

    on_new_message = "ON_NEW_INPUT"  # only in a cycle in which one of its inputs got a value
    always = "ALWAYS"  # in every cycle in which the graph executes it


class _PublishFormat(enum.Enum):
    """How an output node sends its messages (only ``series`` is supported by nrp-core's nodes)."""

    series = "SERIES"
    batch = "BATCH"


class node_policies:  # noqa: N801 - nrp-core's name
    """Namespace of the policy enums (``node_policies.functional_node.exec_policy.always``)."""

    class input_node:  # noqa: N801
        msg_cache = _MsgCache
        msg_publish = _MsgPublish
        clear = _MsgCache.clear
        keep = _MsgCache.keep
        last = _MsgPublish.last
        all = _MsgPublish.all

    class functional_node:  # noqa: N801
        exec_policy = _ExecPolicy
        on_new_message = _ExecPolicy.on_new_message
        always = _ExecPolicy.always

    class output_node:  # noqa: N801
        publish_format = _PublishFormat
        series = _PublishFormat.series
        batch = _PublishFormat.batch
