"""Marshmallow schemas: one source for the OpenAPI document and for request validation.

Request bodies are loaded with :func:`load_body`, which turns the first validation error (in field
order) into a 400 ``Client error`` with the original API's message; flask-smorest documents the
same schemas, so the document and the checks cannot drift apart.
"""

from __future__ import annotations

from typing import Any

from marshmallow import EXCLUDE, Schema, ValidationError, fields, post_load, validate

from hbp_nrp_backend.errors import ClientError
from hbp_nrp_backend.simulations import REQUESTABLE_STATES

DEFAULT_CONFIGURATION = "simulation_config.json"
DEFAULT_SCRIPT = "main_script.py"
#: Longest experiment or file name accepted (bytes, as storage counts them).
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


def _experiment_id(value: str) -> None:
    if not value.strip():
        raise ValidationError("experimentID not given.")
    if (
        "/" in value
        or value in (".", "..")
        or "\0" in value
        or len(value.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES
    ):
        raise ValidationError(f"Invalid experimentID: {value}")


def _file_name(value: str) -> None:
    parts = value.replace("\\", "/").split("/")
    if (
        not value.strip()
        or value.startswith(("/", "\\"))
        or ".." in parts
        or "\0" in value
        or len(value.encode("utf-8", "surrogatepass")) > 4000
    ):
        raise ValidationError(f"Invalid file name: {value}")


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
        validate=_experiment_id,
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
        allow_none=True, load_default=None, error_messages={"invalid": "ctxId must be a string or null"}
    )
    experimentConfiguration = fields.String(
        allow_none=True,
        load_default=DEFAULT_CONFIGURATION,
        validate=_file_name,
        metadata={"description": "file in the experiment, relative"},
        error_messages={"invalid": "Invalid file name"},
    )
    mainScript = fields.String(
        allow_none=True,
        load_default=DEFAULT_SCRIPT,
        validate=_file_name,
        metadata={"description": "file in the experiment, relative"},
        error_messages={"invalid": "Invalid file name"},
    )

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
