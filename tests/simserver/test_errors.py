"""The ``runtime_error`` report (fields, error types, script location) and the wording of
nrp-core failures in it."""

from __future__ import annotations

import pytest

from hbp_nrp_simserver.errors import ErrorType, NrpCoreRunError, ScriptError

TAIL = '". The only possible action now is "shutdown()".'


@pytest.mark.parametrize(
    ("inner", "detail"),
    [
        ('Function "tf_1" (tf_1.py:12): ValueError: x', "tf_1 (tf_1.py:12): ValueError: x"),
        (
            'Engine "python_1" failed in runLoop (engine_1.py:20): RuntimeError: broke',
            "python_1 (engine_1.py:20): RuntimeError: broke (in runLoop)",
        ),
        (
            'Engine "python_2" failed in initialize: TimeoutError: no answer',
            "python_2: TimeoutError: no answer (in initialize)",
        ),
        (
            'Engine "python_1" (engine_1.py:19): EngineScriptError: RunLoop failed (in run_loop)',
            "python_1 (engine_1.py:19): EngineScriptError: RunLoop failed (in run_loop)",
        ),
        ("something else entirely", "something else entirely"),
    ],
)
def test_client_error_wording(inner, detail):
    exc = RuntimeError(f'Request failed with error "{inner}\nTraceback (most recent call last):\n  ...{TAIL}')
    error = NrpCoreRunError.from_client_error(exc)
    assert error.detail == detail and str(error) == detail
    assert error.client_traceback.startswith("Traceback")
    assert isinstance(error, RuntimeError)


def test_payload_fields_and_defaults():
    assert ScriptError("m", ErrorType.SIM_TIMEOUT).payload(4) == {
        "sim_id": "4",
        "msg": "m",
        "error_type": "SimTimeout",
        "fileName": "",
        "line_number": -1,
        "offset": -1,
        "line_text": "",
    }
