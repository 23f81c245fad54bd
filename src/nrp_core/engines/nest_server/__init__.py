"""``nest_server`` engines: the NEST brain runs inside NEST Server, driven over its REST API.

The engine process (:mod:`~nrp_core.engines.nest_server.worker`) starts a NEST Server of its own
(:mod:`~nrp_core.engines.nest_server.serve`, NEST's Flask application under waitress) or, with
``"EngineLaunchCommand": {"LaunchType": "EmptyLaunchCommand"}``, uses one already running at
``NestServerHost:NestServerPort``. Inside NEST Server, :mod:`~nrp_core.engines.nest_server.runtime`
runs the brain script with the ``nest_json`` engine code, so datapacks mean the same as there: the
status of registered devices in, status changes out. Brains name their devices with
``nrp_core.engines.nest_json`` (``CreateDataPack``, ``RegisterDataPack``, ``brain_devices``) or, as
nrp-core's ``nest_server`` brains do, with a ``populations`` dict and
:mod:`nrp_core.engines.nest_server.brain_devices`.
"""
