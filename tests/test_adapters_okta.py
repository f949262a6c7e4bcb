"""The Okta-style identity adapter under respx: lookups, verification recorded in caseplan's
database, and the reset (only after that verification), through the real executor."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest
import respx
from sqlmodel import Session, select

from agent.db import make_engine
from agent.executor import idempotency_key
from plans.models import Step
from tests.adapter_support import Scenario, Sent, check_outcome, harness, scenarios, sent
from tools.adapters.okta import OktaAccountLookup, OktaDirectory, OktaPasswordReset, OktaVerifyIdentity
from tools.base import derived_id
from tools.http import HttpService
from tools.verifications import IdentityVerification, VerificationLedger

BASE = "https://acme.okta.test"
AUTH = "SSWS okta-secret"
USER_ID = "00u1jane"
USER_PATH = f"/api/v1/users/{USER_ID}"
RESET_PATH = f"{USER_PATH}/lifecycle/reset_password"
JANE = {
    "id": USER_ID,
    "status": "ACTIVE",
    "created": "2023-01-01T00:00:00.000Z",
    "profile": {"firstName": "Jane", "lastName": "Doe", "email": "jane@example.com", "login": "jane@example.com"},
    "_links": {"self": {"href": f"{BASE}{USER_PATH}"}},
}
NOT_FOUND = {"errorCode": "E0000007", "errorSummary": f"Not found: Resource not found: {USER_ID} (User)"}
VERIFY = Step(id="verify", tool="verify_identity", args={"user_id": USER_ID, "requester_email": "jane@example.com"})
RESET_ARGS = {"user_id": USER_ID, "verification_id": "$steps.verify.output.verification_id", "revoke_sessions": True}
RESET = Step(id="reset", tool="password_reset", args=RESET_ARGS)
RUN_ID = "run_okta"


def directory() -> OktaDirectory:
    return OktaDirectory(HttpService("okta", BASE, headers={"Authorization": AUTH}, timeout_s=1))


def identity_tools(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'record.db'}")
    ledger = VerificationLedger(engine)
    tools = (OktaVerifyIdentity(directory(), ledger), OktaPasswordReset(directory(), ledger, timedelta(hours=1)))
    return engine, tools


@pytest.mark.parametrize(
    "scenario", scenarios({}, NOT_FOUND, f"account {USER_ID} not found", unexpected=["not", "an", "object"]), ids=lambda s: s.name
)
def test_password_reset(tmp_path, scenario: Scenario):
    engine, tools = identity_tools(tmp_path)
    test = harness(tmp_path, *tools, engine=engine)
    with respx.mock(base_url=BASE) as router:
        router.get(USER_PATH).mock(side_effect=lambda request: httpx.Response(200, json=JANE))
        router.post(RESET_PATH).mock(side_effect=list(scenario.answers))
        verified, result = test.run(VERIFY, RESET, run_id=RUN_ID)
        requests = sent(router)

    assert verified.status == "succeeded" and verified.output["verification_id"].startswith("ver_")
    check_outcome(result, scenario, test.sleeps)
    key = idempotency_key(RUN_ID, "reset", {**RESET_ARGS, "verification_id": verified.output["verification_id"]})
    get = Sent("GET", USER_PATH, {}, None, AUTH, None)
    post = Sent("POST", RESET_PATH, {"sendEmail": "true", "revokeSessions": "true"}, None, AUTH, key)
    assert requests == [get] + [get, post] * scenario.attempts
    if result.ok:
        output = result.output
        assert output["delivered_to"] == "j***@example.com" and output["reset_link_sent"] and output["sessions_revoked"]
        expires = datetime.fromisoformat(output["expires_at"])
        assert timedelta(minutes=59) < expires - datetime.now(UTC) <= timedelta(hours=1)
        assert "password" not in str(output).replace("password_reset", "") and "http" not in str(output)


@pytest.mark.parametrize("scenario", scenarios([JANE], NOT_FOUND, "HTTP 404: Not found"), ids=lambda s: s.name)
def test_account_lookup_by_email(tmp_path, scenario: Scenario):
    test = harness(tmp_path, OktaAccountLookup(directory()))
    with respx.mock(base_url=BASE) as router:
        router.get("/api/v1/users").mock(side_effect=list(scenario.answers))
        [result] = test.run(Step(id="find", tool="account_lookup", args={"email": "Jane@Example.com"}))
        requests = sent(router)

    check_outcome(result, scenario, test.sleeps)
    search = Sent("GET", "/api/v1/users", {"search": 'profile.email eq "jane@example.com"'}, None, AUTH, None)
    assert requests == [search] * scenario.attempts
    if result.ok:
        assert result.output == {"user_id": USER_ID, "email": "jane@example.com", "display_name": "Jane Doe", "status": "active"}


@pytest.mark.parametrize(
    ("users", "message", "status"),
    [([], "no account matches", 404), ([JANE, {**JANE, "id": "00u2twin"}], "2 accounts match that email", 409)],
)
def test_account_lookup_needs_exactly_one_match(tmp_path, users, message, status):
    test = harness(tmp_path, OktaAccountLookup(directory()))
    with respx.mock(base_url=BASE) as router:
        router.get("/api/v1/users").mock(return_value=httpx.Response(200, json=users))
        [result] = test.run(Step(id="find", tool="account_lookup", args={"email": "jane@example.com"}))
    assert result.status == "failed" and result.error == {"kind": "permanent", "message": message, "status_code": status}


def test_account_lookup_by_user_id_maps_okta_statuses(tmp_path):
    test = harness(tmp_path, OktaAccountLookup(directory()))
    with respx.mock(base_url=BASE) as router:
        router.get(USER_PATH).mock(return_value=httpx.Response(200, json={**JANE, "status": "LOCKED_OUT"}))
        [result] = test.run(Step(id="find", tool="account_lookup", args={"user_id": USER_ID}))
    assert result.output["status"] == "locked"


@pytest.mark.parametrize(
    ("user", "requester", "reason"),
    [
        (JANE, "omar@example.com", "requester does not own the account"),
        ({**JANE, "status": "SUSPENDED"}, "jane@example.com", "account is suspended"),
    ],
)
def test_failed_verification_is_recorded_and_denies_the_reset(tmp_path, user, requester, reason):
    engine, tools = identity_tools(tmp_path)
    test = harness(tmp_path, *tools, engine=engine)
    with respx.mock(base_url=BASE, assert_all_called=False) as router:
        router.get(USER_PATH).mock(return_value=httpx.Response(200, json=user))
        reset = router.post(RESET_PATH).mock(return_value=httpx.Response(200, json={}))
        verify = Step(id="verify", tool="verify_identity", args={"user_id": USER_ID, "requester_email": requester})
        [result] = test.run(verify, run_id=RUN_ID)
        assert result.status == "failed" and result.error["kind"] == "denied" and reason in result.error["message"]
        [row] = _verifications(engine)
        assert row.verified is False and row.reason == reason and row.run_id == RUN_ID
        # Even a plan that ignored the failed step could not reset with that verification.
        forced = test.run(Step(id="reset", tool="password_reset", args={"user_id": USER_ID, "verification_id": row.verification_id}), run_id=RUN_ID)
        assert forced[0].error["kind"] == "denied" and not reset.called
    assert row.verification_id == derived_id("ver", idempotency_key(RUN_ID, "verify", verify.args))


def test_reset_refuses_verifications_from_another_run_or_account(tmp_path):
    engine, tools = identity_tools(tmp_path)
    test = harness(tmp_path, *tools, engine=engine)
    with respx.mock(base_url=BASE) as router:
        router.get(USER_PATH).mock(return_value=httpx.Response(200, json=JANE))
        reset = router.post(RESET_PATH).mock(return_value=httpx.Response(200, json={}))
        [verified] = test.run(VERIFY, run_id="run_a")
        verification_id = verified.output["verification_id"]
        for run_id, user_id in (("run_b", USER_ID), ("run_a", "00u2other"), ("run_a", USER_ID)):
            step = Step(id="reset", tool="password_reset", args={"user_id": user_id, "verification_id": verification_id})
            [result] = test.run(step, run_id=run_id)
            if run_id == "run_a" and user_id == USER_ID:
                assert result.status == "succeeded"
            else:
                assert result.error["kind"] == "denied" and result.error["status_code"] == 403, result.error
        assert reset.call_count == 1, "only the same run's reset of the verified account reached Okta"


def test_a_reset_link_in_the_answer_is_never_passed_on(tmp_path):
    engine, tools = identity_tools(tmp_path)
    test = harness(tmp_path, *tools, engine=engine)
    with respx.mock(base_url=BASE) as router:
        router.get(USER_PATH).mock(return_value=httpx.Response(200, json=JANE))
        router.post(RESET_PATH).mock(return_value=httpx.Response(200, json={"resetPasswordUrl": "https://acme.okta.test/reset/SECRET"}))
        _, result = test.run(VERIFY, RESET, run_id=RUN_ID)
    assert result.status == "succeeded" and "SECRET" not in str(result.model_dump())


def _verifications(engine):
    with Session(engine) as session:
        return session.exec(select(IdentityVerification)).all()
