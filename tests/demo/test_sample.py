"""The sample generator: deterministic, and every messy case where the demo says it is."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from datasync.demo.sample import (
    CASE_DIFFERS,
    INVALID_EMAIL,
    LIFECYCLE_TO_STATUS,
    LIST_NAME,
    NO_EMAIL,
    NO_LAST_NAME,
    NOT_IN_LIST,
    SIZES,
    generate,
)

MESSY = {NO_EMAIL, INVALID_EMAIL, NO_LAST_NAME}


def test_same_seed_same_sample() -> None:
    assert generate("small").hubspot_records() == generate("small").hubspot_records()
    assert generate("small", seed=1).salesforce_records() != generate("small").salesforce_records()


def test_normal_size_matches_the_issue() -> None:
    sample = generate("normal")
    assert (len(sample.hubspot), len(sample.salesforce)) == (2000, 1500)
    assert sample.count("hubspot", overlap=True) == sample.count("salesforce", overlap=True) == 800
    assert 0.015 < sample.count("hubspot", NO_EMAIL) / 2000 < 0.03
    assert 0.005 < sample.count("hubspot", INVALID_EMAIL) / 2000 < 0.02
    members = sum(1 for c in sample.hubspot if LIST_NAME in c.fields.get("lists", []))
    assert 0.65 < members / 2000 < 0.75
    assert sample.count("salesforce", CASE_DIFFERS) > 0


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(min_value=0, max_value=2**32))
def test_sample_invariants(seed: int) -> None:
    sample = generate("small", seed=seed)
    size = SIZES["small"]
    assert (len(sample.hubspot), len(sample.salesforce)) == (size.hubspot, size.salesforce)
    for contacts, field in ((sample.hubspot, "email"), (sample.salesforce, "Email")):
        emails = [str(c.fields[field]).lower() for c in contacts if c.fields.get(field)]
        assert len(emails) == len(set(emails))  # no duplicates within one app
        for contact in contacts:
            # Data problems only on contacts in one app: each has one predictable outcome.
            assert not (contact.overlap and contact.tags & MESSY)
            assert (NO_EMAIL in contact.tags) == (field not in contact.fields)
    hubspot_keys = {c.key: c for c in sample.hubspot if c.overlap}
    for contact in sample.salesforce:
        if contact.overlap:
            twin = hubspot_keys[contact.key]
            assert str(contact.fields["Email"]).lower() == str(twin.fields["email"])
            assert contact.fields["LastName"]  # Salesforce requires it
    for contact in sample.hubspot:
        assert contact.fields["lifecyclestage"] in LIFECYCLE_TO_STATUS
        assert (NOT_IN_LIST in contact.tags) == ("lists" not in contact.fields)
