import pytest

from plans.refs import MISSING, MalformedRef, SlotRef, StepRef, lookup_path, parse_ref, substitute, walk_refs


def test_parses_step_and_slot_references():
    assert parse_ref("$steps.lookup.output.user_id") == StepRef("lookup", ("user_id",))
    assert parse_ref("$steps.lookup.output") == StepRef("lookup", ())
    assert parse_ref("$slots.email") == SlotRef("email")
    assert parse_ref("plain text") is None
    assert parse_ref("$$steps.literal") is None
    assert parse_ref(42) is None


@pytest.mark.parametrize("value", ["$steps.lookup.user_id", "$steps.Bad.output.x", "$slots.", "$slotsx"])
def test_malformed_references_are_refused(value):
    with pytest.raises(MalformedRef):
        parse_ref(value)


def test_walk_and_substitute_reach_nested_values():
    args = {"a": "$slots.x", "b": ["$steps.s.output.v", "keep"], "c": {"d": "$slots.missing"}, "e": "$$5"}
    assert [str(r) if isinstance(r, StepRef) else r.name for r in walk_refs(args)] == ["x", "$steps.s.output.v", "missing"]

    def fill(ref):
        if isinstance(ref, SlotRef):
            return {"x": 1}.get(ref.name, MISSING)
        return "resolved"

    assert substitute(args, fill) == {"a": 1, "b": ["resolved", "keep"], "c": {}, "e": "$5"}


def test_lookup_path_follows_fields_and_indices():
    data = {"passages": [{"id": "a"}, {"id": "b"}]}
    assert lookup_path(data, ("passages", "1", "id")) == "b"
    with pytest.raises(KeyError):
        lookup_path(data, ("passages", "5"))
