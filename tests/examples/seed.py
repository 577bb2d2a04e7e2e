"""The seed data of the examples test, and what a sync of it must lead to.

Every contact is one `Person` with a `kind` naming the case it exercises; the expected
counts are derived from the kinds, never written down as numbers.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

# The example's value map (examples/hubspot-salesforce/connection.yaml), read from the file
# by the test; kept here only as the stages the seed picks from.
MAPPED_STAGE = "customer"  # -> "Customer", one of the sandbox org's Status__c options
UNMAPPED_STAGE = "evangelist"  # not in the value map: passes through as is
BAD_OPTION_STAGE = "lead"  # -> "Open", not an option of the sandbox org's Status__c picklist
INVALID_EMAILS = ("no-at-sign.example.com", "two@@example.com", "spaces in@example.com")


@dataclass(frozen=True)
class Person:
    """One seeded contact. `email` as stored in the app (may be blank or invalid)."""

    kind: str
    email: str
    firstname: str = ""
    lastname: str = ""
    jobtitle: str = ""
    stage: str = ""
    member: bool = True
    opted_out: bool = False
    lists: tuple[str, ...] = field(default=())


# HubSpot kinds -> how many of each (deterministic; ~100 contacts).
HUBSPOT_KINDS: dict[str, int] = {
    "valid": 30,  # list member, valid email, mapped stage: synced to Salesforce
    "valid-unmapped-stage": 4,  # stage outside the value map, still a Status__c option
    "overlap": 10,  # like valid, and Salesforce already holds the email (other case)
    "no-email": 6,  # MissingIdentity
    "invalid-email": len(INVALID_EMAILS),  # InvalidEmail
    "no-lastname": 5,  # Salesforce LastName is required on create: RequiredFieldMissing
    "bad-option-stage": 4,  # value-mapped stage that is no Status__c option: InvalidOption
    "blank-stage": 3,  # required: true Status__c mapping, no value: RequiredFieldMissing
    "non-member": 12,  # NotInList
    "opted-out": 8,  # member, hs_email_optout true: OptedOut
}
# Salesforce kinds (the overlapping ones are built from the HubSpot "overlap" people).
SALESFORCE_KINDS: dict[str, int] = {
    "sf-only": 15,  # created in HubSpot (they leave Salesforce freely)
    "sf-no-email": 5,  # MissingIdentity on the Salesforce side
    "sf-invalid-email": 2,  # HubSpot refuses the email: InvalidEmail
}


def hubspot_people() -> list[Person]:
    people: list[Person] = []
    for kind, count in HUBSPOT_KINDS.items():
        for i in range(count):
            tag = f"{kind}-{i}"
            email = f"hs.{tag}@example.com"
            if kind == "no-email":
                email = ""
            elif kind == "invalid-email":
                email = INVALID_EMAILS[i]
            stage = {
                "valid-unmapped-stage": UNMAPPED_STAGE,
                "bad-option-stage": BAD_OPTION_STAGE,
                "blank-stage": "",
            }.get(kind, MAPPED_STAGE)
            people.append(
                Person(
                    kind=kind,
                    email=email,
                    firstname=f"Ann{i}",
                    lastname="" if kind == "no-lastname" else f"Hub-{tag}",
                    jobtitle=("CEO", "CTO", "Buyer")[i % 3],
                    stage=stage,
                    member=kind != "non-member",
                    opted_out=kind == "opted-out",
                )
            )
    return people


def salesforce_people(hubspot: list[Person]) -> list[Person]:
    people = [
        Person(
            kind="sf-overlap",
            email=person.email.upper(),
            firstname=person.firstname,
            lastname=person.lastname,
            jobtitle="Old title",
        )
        for person in hubspot
        if person.kind == "overlap"
    ]
    for kind, count in SALESFORCE_KINDS.items():
        for i in range(count):
            tag = f"{kind}-{i}"
            email = f"SF.{tag}@Example.com"
            if kind == "sf-no-email":
                email = ""
            elif kind == "sf-invalid-email":
                email = f"sf {tag} at example"
            people.append(
                Person(
                    kind=kind,
                    email=email,
                    firstname=f"Bob{i}",
                    lastname=f"Force-{tag}",
                    jobtitle=("VP", "Analyst")[i % 2],
                )
            )
    return people


def hubspot_rows(people: list[Person]) -> list[dict[str, Any]]:
    rows = []
    for person in people:
        row: dict[str, Any] = {
            "email": person.email,
            "firstname": person.firstname,
            "lastname": person.lastname,
            "jobtitle": person.jobtitle,
            "lifecyclestage": person.stage,
            "hs_email_optout": "true" if person.opted_out else "false",
        }
        rows.append({key: value for key, value in row.items() if value != ""})
    return rows


def salesforce_rows(people: list[Person]) -> list[dict[str, Any]]:
    rows = []
    for person in people:
        row = {
            "Email": person.email,
            "FirstName": person.firstname,
            "LastName": person.lastname,
            "Title": person.jobtitle,
        }
        rows.append({key: value for key, value in row.items() if value != ""})
    return rows


def kinds(people: list[Person]) -> Counter[str]:
    return Counter(person.kind for person in people)
