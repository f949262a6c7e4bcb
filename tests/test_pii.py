import pytest

from policies.pii import _DETECTORS, PII_KINDS, find_pii, mask_data, mask_text, placeholder


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("write to jane.doe+vip@example.co.uk please", "email"),
        ("card 4111 1111 1111 1111 exp 12/29", "card"),
        ("card 4111-1111-1111-1111", "card"),
        ("IBAN DE89 3704 0044 0532 0130 00 thanks", "iban"),
        ("IBAN GB82WEST12345698765432", "iban"),
        ("my SSN is 078-05-1120", "national_id"),
        ("call me on +44 20 7946 0958", "phone"),
        ("call (415) 555-2671 after 5", "phone"),
    ],
)
def test_detects_each_kind(text, kind):
    findings = find_pii(text)
    assert [f.kind for f in findings] == [kind]
    assert placeholder(kind, findings[0].value) in mask_text(text)
    assert findings[0].value not in mask_text(text)


def test_every_detector_is_covered_by_the_at_or_digit_prefilter():
    # find_pii clears text with no "@" and no digit before running any detector; a detector
    # that can match without one (a name list, say) must change that prefilter first.
    assert {d.kind for d in _DETECTORS} == set(PII_KINDS) == {"email", "card", "iban", "national_id", "phone"}
    assert find_pii("Reset link sent; the ticket is now pending and awaits the customer.") == []


@pytest.mark.parametrize(
    "text",
    [
        "ticket 1002 and order 55512",
        "card 4111 1111 1111 1112",  # fails Luhn
        "IBAN DE89 3704 0044 0532 0130 01",  # fails mod 97
        "version 2.13.0 released 2026-11-25",
        "2026-11-25 11:44:15.422532 [error] unhandled error",  # a log line's timestamp
        "retry at 2026-11-25T11:44:15+00:00",
    ],
)
def test_leaves_non_pii_alone(text):
    assert mask_text(text) == text


def test_masking_is_stable_and_reaches_nested_data():
    data = {"ticket": {"text": "from jane@example.com"}, "emails": ["JANE@example.com"], "n": 3}
    masked = mask_data(data)
    assert masked["n"] == 3
    assert masked["ticket"]["text"] == f"from {placeholder('email', 'jane@example.com')}"
    assert masked["emails"] == [placeholder("email", "jane@example.com")]
