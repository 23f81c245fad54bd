"""Marshmallow schemas: one source for the OpenAPI document and for request validation.

Request bodies are loaded with :func:`load_body`, which turns the first validation error (in field
order) into a 400 ``Client error`` with the original API's message; flask-smorest documents the
same schemas, so the document and the checks cannot drift apart.
"""

from __future__ import annotations

from typing import Any

from marshmallow import EXCLUDE, Schema, ValidationError, fields, post_load, validate

from hbp_nrp_backend.errors import ClientError
from hbp_nrp_backend.simulation import REQUESTABLE_STATES

DEFAULT_CONFIGURATION = "simulation_config.json"
DEFAULT_SCRIPT = "main_script.py"
#: Longest experiment name accepted (characters; storage also refuses more than 255 bytes).
MAX_NAME_BYTES = 255


def load_body(schema: Schema, body: dict[str, Any]) -> dict[str, Any]:
    """``body`` loaded by ``schema``.

    Raises:
        ClientError: the first invalid field's message (fields in declaration order).
    """
    try:
        return schema.load(body)
    except ValidationError as exc:
        messages = exc.normalized_messages()
        for name in schema.fields:
            if name in messages:
                first = messages[name]
                while isinstance(first, list | dict):
                    first = next(iter(first.values())) if isinstance(first, dict) else first[0]
                raise ClientError(str(first)) from exc
        raise ClientError("Invalid request body") from exc


#: An experiment (storage folder) name: no ``/`` or NUL, not starting with ``.`` or a space (the
#: whitespace is spelled out: ``\s`` means more in Python than in JSON Schema's regexes).
EXPERIMENT_ID_PATTERN = r"^[^./\x00 \t\n\r\f\v][^/\x00]*$"
#: One segment of a file path: no ``/``, ``\\`` or NUL, not starting with ``.`` or a space (so no
#: ``..`` and no hidden files).
_SEGMENT = r"[^./\\\x00 \t\n\r\f\v][^/\\\x00]*"
#: A file of the experiment: relative, ``/``-separated segments (never absolute, never ``..``).
FILE_NAME_PATTERN = rf"^{_SEGMENT}(?:/{_SEGMENT})*$"
MAX_FILE_NAME = 1000


def _file_name_field(default: str) -> fields.String:
    return fields.String(
        allow_none=True,
        load_default=default,
        validate=[
            validate.Length(min=1, max=MAX_FILE_NAME, error="Invalid file name: {input}"),
            validate.Regexp(FILE_NAME_PATTERN, error="Invalid file name: {input}"),
        ],
        metadata={"description": f"file in the experiment, relative (null: {default})"},
        error_messages={"invalid": "Invalid file name"},
    )


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
    """``POST /simulation``; unknown fields are ignored, as by the original."""

    class Meta:
        unknown = EXCLUDE

    experimentID = fields.String(
        required=True,
        validate=[
            validate.Length(min=1, error="experimentID not given."),
            validate.Length(max=MAX_NAME_BYTES, error="Invalid experimentID: too long"),
            validate.Regexp(EXPERIMENT_ID_PATTERN, error="Invalid experimentID: {input}"),
        ],
        metadata={"description": "storage experiment (folder) name"},
        error_messages={
            "required": "experimentID not given.",
            "null": "experimentID not given.",
            "invalid": "experimentID must be a non-empty string",
        },
    )
    state = fields.String(
        load_default="created",
        validate=validate.OneOf(["created"], error="Invalid state requested: ({input})"),
        metadata={"description": "only 'created'"},
        error_messages={"invalid": "Invalid state requested"},
    )
    ctxId = fields.String(
        allow_none=True,
        load_default=None,
        # it travels to storage in an HTTP header: visible ASCII only
        validate=[
            validate.Length(max=256, error="Invalid ctxId: too long"),
            validate.Regexp(r"^[!-~]*$", error="Invalid ctxId: visible ASCII characters only"),
        ],
        metadata={"description": "collaboration context id (visible ASCII)"},
        error_messages={"invalid": "ctxId must be a string or null"},
    )
    experimentConfiguration = _file_name_field(DEFAULT_CONFIGURATION)
    mainScript = _file_name_field(DEFAULT_SCRIPT)

    @post_load
    def _defaults(self, data: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        if data.get("experimentConfiguration") is None:
            data["experimentConfiguration"] = DEFAULT_CONFIGURATION
        if data.get("mainScript") is None:
            data["mainScript"] = DEFAULT_SCRIPT
        return data


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
    node = fields.Nested(
        "NodeSchema",
        allow_none=True,
        metadata={"description": "where its Simulation Server runs (null until it was placed)"},
    )


class NodeSchema(Schema):
    executor = fields.String(metadata={"description": "local or ray (NRP_EXECUTOR)"})
    id = fields.String(
        allow_none=True, metadata={"description": "the Ray node id; local for the local executor"}
    )
    host = fields.String(allow_none=True, metadata={"description": "the node's IP address or host name"})


class StateRequestSchema(Schema):
    """``PUT /simulation/<id>/state``; any other value is a 400 ``State Transition error`` naming the
    allowed targets (the field is loaded raw so the lifecycle says which ones)."""

    class Meta:
        unknown = EXCLUDE

    state = fields.Raw(
        required=True,
        allow_none=False,
        metadata={"type": "string", "enum": list(REQUESTABLE_STATES), "description": "the target state"},
        error_messages={"required": "state not given.", "null": "state not given."},
    )


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
