"""Tool contracts are strict, and their JSON Schemas say the same as the Pydantic models,
including the rules that span fields."""

from __future__ import annotations

import json

import jsonschema
import pytest
from pydantic import BaseModel, ValidationError
from typer.testing import CliRunner

from agent.cli import app
from tools.contracts.escalation import EscalateInput
from tools.contracts.identity import AccountLookupInput, PasswordResetInput, VerifyIdentityInput
from tools.contracts.tickets import TicketLookupInput, TicketUpdateInput

INPUTS = [TicketLookupInput, TicketUpdateInput, AccountLookupInput, VerifyIdentityInput, PasswordResetInput, EscalateInput]


def accepted_by_model(model: type[BaseModel], data: dict) -> bool:
    try:
        model.model_validate(data)
    except ValidationError:
        return False
    return True


def accepted_by_schema(model: type[BaseModel], data: dict) -> bool:
    validator = jsonschema.Draft202012Validator(model.model_json_schema())
    return not list(validator.iter_errors(data))


@pytest.mark.parametrize(
    ("model", "data", "accepted"),
    [
        (AccountLookupInput, {"email": "jane@example.com"}, True),
        (AccountLookupInput, {"user_id": "u_1001"}, True),
        (AccountLookupInput, {"email": "jane@example.com", "user_id": None}, True),
        (AccountLookupInput, {"email": "jane@example.com", "user_id": "u_1001"}, False),
        (AccountLookupInput, {"email": None, "user_id": None}, False),
        (AccountLookupInput, {}, False),
        (TicketUpdateInput, {"ticket_id": "1", "status": "solved"}, True),
        (TicketUpdateInput, {"ticket_id": "1", "internal_note": "checked"}, True),
        (TicketUpdateInput, {"ticket_id": "1", "status": None, "public_reply": None}, False),
        (TicketUpdateInput, {"ticket_id": "1"}, False),
        (TicketUpdateInput, {"ticket_id": 1, "status": "solved"}, False),
        (TicketLookupInput, {"ticket_id": "../../etc"}, False),
        (PasswordResetInput, {"user_id": "u_1", "verification_id": "ver_1", "revoke_sessions": "true"}, False),
        (PasswordResetInput, {"user_id": "u_1", "verification_id": "ver_1", "new_password": "x"}, False),
        (PasswordResetInput, {"user_id": "u_1", "verification_id": ""}, False),
        (EscalateInput, {"reason": "tool_failure", "summary": "s", "evidence": [""]}, False),
        (EscalateInput, {"reason": "tool_failure", "summary": "s", "priority": "normal"}, True),
    ],
)
def test_schema_and_model_agree(model, data, accepted):
    assert accepted_by_model(model, data) is accepted
    assert accepted_by_schema(model, data) is accepted


@pytest.mark.parametrize("model", INPUTS, ids=lambda m: m.__name__)
def test_every_input_field_is_described_and_unknown_fields_are_refused(model):
    schema = model.model_json_schema()
    assert schema["additionalProperties"] is False and schema.get("description")
    undocumented = [name for name, prop in schema["properties"].items() if not prop.get("description")]
    assert undocumented == []


def test_inputs_do_not_coerce_types():
    with pytest.raises(ValidationError, match="valid string"):
        TicketLookupInput.model_validate({"ticket_id": 1003})
    with pytest.raises(ValidationError, match="valid boolean"):
        PasswordResetInput.model_validate({"user_id": "u_1", "verification_id": "ver_1", "revoke_sessions": 1})
    assert TicketLookupInput.model_validate_json('{"ticket_id": "1003"}').ticket_id == "1003"


def test_tools_list_json_exports_every_schema(tmp_path):
    result = CliRunner().invoke(app, ["tools", "list", "--json"], env={"CASEPLAN_DATA_DIR": str(tmp_path)})
    assert result.exit_code == 0, result.output
    listed = {tool["name"]: tool for tool in json.loads(result.stdout)}
    assert listed["password_reset"]["side_effects"] is True and listed["password_reset"]["adapter"] == "sandbox"
    assert listed["password_reset"]["input_schema"] == PasswordResetInput.model_json_schema()
    assert set(listed) >= {"ticket_lookup", "ticket_update", "account_lookup", "verify_identity", "password_reset", "escalate_to_human"}
