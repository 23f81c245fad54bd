"""Marshmallow schemas: they document the OpenAPI and shape answers; requests are checked by hand.

Validation is our own (our error messages, and 400 rather than 422), so no schema validates input.
"""

from __future__ import annotations

from marshmallow import Schema, fields


class ApiErrorSchema(Schema):
    message = fields.String(required=True)
    type = fields.String(required=True)
    data = fields.String(allow_none=True)


class VersionSchema(Schema):
    hbp_nrp_backend = fields.String(required=True)
    hbp_nrp_simserver = fields.String(required=True)


class HealthSchema(Schema):
    status = fields.String(required=True)


class SimulationRequestSchema(Schema):
    experimentID = fields.String(required=True, metadata={"description": "storage experiment (folder) name"})
    experimentConfiguration = fields.String(load_default="simulation_config.json")
    mainScript = fields.String(load_default="main_script.py")
    state = fields.String(load_default="created", metadata={"description": "only 'created'"})
    ctxId = fields.String(allow_none=True, load_default=None)


class SimulationSchema(Schema):
    state = fields.String()
    simulationID = fields.Integer()
    experimentConfiguration = fields.String()
    mainScript = fields.String()
    owner = fields.String()
    creationDate = fields.String()
    experimentID = fields.String()
    ctxId = fields.String(allow_none=True)
    MQTTPrefix = fields.String()
    ready = fields.Boolean()
    error = fields.Dict(allow_none=True)


class StateRequestSchema(Schema):
    state = fields.String(required=True, metadata={"description": "started, paused or stopped"})


class StateSchema(Schema):
    state = fields.String()
    ready = fields.Boolean()
    error = fields.Dict(allow_none=True)


class LogFileSchema(Schema):
    name = fields.String(metadata={"description": "file name in the simulation directory"})
    size = fields.Integer(metadata={"description": "file size in bytes"})
    offset = fields.Integer(metadata={"description": "byte offset in the file where content starts"})
    truncated = fields.Boolean(metadata={"description": "true when tail cut content short"})
    content = fields.String(metadata={"description": "text (UTF-8, undecodable bytes replaced)"})


class SimulationLogsSchema(Schema):
    simulationID = fields.Integer()
    state = fields.String()
    files = fields.List(fields.Nested(LogFileSchema))
