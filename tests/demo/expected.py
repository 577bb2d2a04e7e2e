"""What the demo's first sync must report, computed from the generated sample alone."""

from __future__ import annotations

from dataclasses import dataclass

from datasync.demo.sample import (
    INVALID_EMAIL,
    NO_EMAIL,
    NO_LAST_NAME,
    NOT_IN_LIST,
    OPTED_OUT,
    Sample,
    SampleContact,
)


def in_scope(contact: SampleContact) -> bool:
    """A HubSpot contact may leave HubSpot: list member, not opted out."""
    return not contact.tags & {NOT_IN_LIST, OPTED_OUT}


@dataclass(frozen=True)
class Expected:
    missing_identity: int
    invalid_email: int
    required_field_missing: int
    not_in_list: int
    not_in_list_without_match: int
    opted_out: int


def expected_first_run(sample: Sample) -> Expected:
    hubspot, salesforce = sample.hubspot, sample.salesforce
    return Expected(
        # Scope is checked before identity: only in-scope HubSpot contacts count as missing.
        missing_identity=sum(1 for c in hubspot if in_scope(c) and NO_EMAIL in c.tags)
        + sum(1 for c in salesforce if NO_EMAIL in c.tags),
        invalid_email=sum(1 for c in hubspot if in_scope(c) and INVALID_EMAIL in c.tags)
        + sum(1 for c in salesforce if INVALID_EMAIL in c.tags),
        required_field_missing=sum(1 for c in hubspot if in_scope(c) and NO_LAST_NAME in c.tags),
        not_in_list=sum(1 for c in hubspot if NOT_IN_LIST in c.tags),
        # Never paired, so excluded; a matched non-member is in sync where the apps agree.
        not_in_list_without_match=sum(
            1 for c in hubspot if NOT_IN_LIST in c.tags and not c.overlap
        ),
        opted_out=sum(1 for c in hubspot if OPTED_OUT in c.tags and NOT_IN_LIST not in c.tags),
    )
