"""A deterministic, realistic sample of contacts for the two sandbox apps.

The same seed always gives the same records. Every messy case the seed guide's checklist
asks about is present, and each generated contact carries the tags that say which case it
is, so tests can compute the expected sync outcome from the sample alone.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any, Literal

LIST_NAME = "Sales-qualified contacts"
SEED = 20_260_401

Size = Literal["small", "normal"]

# Tags (a contact has at most one "messy" tag; scope tags are independent).
NO_EMAIL = "no-email"
INVALID_EMAIL = "invalid-email"
NO_LAST_NAME = "no-last-name"
NOT_IN_LIST = "not-in-list"
OPTED_OUT = "opted-out"
CASE_DIFFERS = "email-case-differs"
VALUES_DIFFER = "values-differ"


@dataclass(frozen=True)
class SampleSize:
    hubspot: int
    salesforce: int
    overlap: int


SIZES: dict[str, SampleSize] = {
    "small": SampleSize(hubspot=300, salesforce=220, overlap=120),
    "normal": SampleSize(hubspot=2000, salesforce=1500, overlap=800),
}


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


FIRST_NAMES = _words(
    "Ada Alan Amara Anika Beatriz Bruno Camila Chen Chloe Daniel Dario Elena Emeka Eva Farah "
    "Felix Grace Hana Hugo Ines Ivan Jamal Jin Julia Kai Keisha Lars Leila Liam Lucia Malik "
    "Maria Mateo Mei Nadia Noah Olga Omar Paula Priya Rafael Rosa Sami Sara Sofia Tariq Tomas "
    "Uma Vera Victor Wen Yara Yusuf Zoe Aylin Boris Clara Diego Esther Goran"
)
LAST_NAMES = _words(
    "Abara Alvarez Andersen Bauer Becker Bianchi Chowdhury Costa Dubois Duarte Eriksen Fischer "
    "Garcia Haddad Hansen Ito Jovanovic Kamau Kim Kowalski Larsen Lopez Mahlaba Martin Meyer "
    "Moreau Nakamura Nguyen Novak Okafor Olsen Park Patel Petrov Quispe Rahman Ramos Rossi "
    "Santos Schmidt Silva Sousa Suzuki Tanaka Torres Usman Vargas Volkov Wagner Walsh Weber "
    "Yamamoto Yilmaz Zhang Zimmermann Osei Lindqvist Horvat Demir Achebe"
)
COMPANIES = (
    ("Northwind Traders", "northwind.example"),
    ("Bluefin Logistics", "bluefin.example"),
    ("Cedar & Pine Health", "cedarpine.example"),
    ("Helios Solar", "helios-solar.example"),
    ("Kestrel Analytics", "kestrel.example"),
    ("Lumen Learning", "lumen.example"),
    ("Marlow Foods", "marlowfoods.example"),
    ("Nimbus Cloudworks", "nimbus.example"),
    ("Orchid Biotech", "orchidbio.example"),
    ("Pioneer Freight", "pioneerfreight.example"),
    ("Quarry Construction", "quarry.example"),
    ("Redwood Insurance", "redwood-ins.example"),
    ("Saffron Hospitality", "saffron.example"),
    ("Tidewater Energy", "tidewater.example"),
    ("Umber Design Studio", "umber.example"),
    ("Vantage Retail", "vantage.example"),
    ("Willow Legal", "willowlegal.example"),
    ("Xylo Robotics", "xylo.example"),
    ("Yarrow Media", "yarrow.example"),
    ("Zephyr Airlines", "zephyrair.example"),
    ("Atlas Manufacturing", "atlasmfg.example"),
    ("Beacon Security", "beaconsec.example"),
    ("Copperleaf Bank", "copperleaf.example"),
    ("Driftwood Travel", "driftwood.example"),
)
TITLES = (
    "Account Executive",
    "Chief Financial Officer",
    "Chief Technology Officer",
    "Customer Success Manager",
    "Data Analyst",
    "Director of Marketing",
    "Director of Operations",
    "Engineering Manager",
    "Head of Procurement",
    "HR Business Partner",
    "IT Administrator",
    "Marketing Coordinator",
    "Office Manager",
    "Operations Analyst",
    "Product Manager",
    "Project Manager",
    "Sales Development Representative",
    "Senior Buyer",
    "Software Engineer",
    "VP of Sales",
)
PLACES = (
    ("Amsterdam", "Netherlands"),
    ("Austin", "United States"),
    ("Berlin", "Germany"),
    ("Bogota", "Colombia"),
    ("Boston", "United States"),
    ("Cape Town", "South Africa"),
    ("Chicago", "United States"),
    ("Dublin", "Ireland"),
    ("Lagos", "Nigeria"),
    ("Lisbon", "Portugal"),
    ("London", "United Kingdom"),
    ("Madrid", "Spain"),
    ("Melbourne", "Australia"),
    ("Mumbai", "India"),
    ("Nairobi", "Kenya"),
    ("Osaka", "Japan"),
    ("Paris", "France"),
    ("Sao Paulo", "Brazil"),
    ("Seoul", "South Korea"),
    ("Toronto", "Canada"),
)
# HubSpot lifecycle stages (internal values) and the Salesforce Status__c picklist labels.
LIFECYCLE_TO_STATUS = {
    "subscriber": "Subscriber",
    "lead": "Lead",
    "marketingqualifiedlead": "Marketing Qualified",
    "salesqualifiedlead": "Sales Qualified",
    "opportunity": "Opportunity",
    "customer": "Customer",
    "evangelist": "Evangelist",
    "other": "Other",
}
LIFECYCLE_WEIGHTS = (10, 25, 20, 15, 12, 14, 2, 2)


@dataclass
class Person:
    key: str
    first: str
    last: str
    email: str
    title: str
    company: str
    city: str
    country: str
    phone: str
    lifecycle: str


@dataclass
class SampleContact:
    """One generated record: the app's own field names, and the tags that explain it."""

    key: str  # the person it belongs to (shared by both apps for overlapping contacts)
    app: Literal["hubspot", "salesforce"]
    fields: dict[str, Any]
    tags: frozenset[str] = frozenset()
    overlap: bool = False

    @property
    def email(self) -> str | None:
        value = self.fields.get("email" if self.app == "hubspot" else "Email")
        return None if value in (None, "") else str(value)


@dataclass
class Sample:
    size: SampleSize
    hubspot: list[SampleContact] = field(default_factory=list)
    salesforce: list[SampleContact] = field(default_factory=list)

    def hubspot_records(self) -> list[dict[str, Any]]:
        """Records for HubSpotSandbox.load (list memberships under `lists`)."""
        return [dict(contact.fields) for contact in self.hubspot]

    def salesforce_records(self) -> list[dict[str, Any]]:
        return [dict(contact.fields) for contact in self.salesforce]

    def count(self, app: str, *tags: str, overlap: bool | None = None) -> int:
        """Contacts of `app` carrying every tag in `tags` (and the overlap flag, if given)."""
        return sum(
            1
            for contact in (self.hubspot if app == "hubspot" else self.salesforce)
            if set(tags) <= contact.tags and (overlap is None or contact.overlap == overlap)
        )


def generate(size: Size | str = "normal", seed: int = SEED) -> Sample:
    """The demo's sample: HubSpot and Salesforce contacts, some of them the same people."""
    dimensions = SIZES[size]
    rng = random.Random(seed)  # noqa: S311 - deterministic demo data, not security
    people = _people(rng, dimensions.hubspot + dimensions.salesforce - dimensions.overlap)
    shared = people[: dimensions.overlap]
    hubspot_only = people[dimensions.overlap : dimensions.hubspot]
    salesforce_only = people[dimensions.hubspot :]
    sample = Sample(size=dimensions)
    hubspot_people = [(person, True) for person in shared] + [(p, False) for p in hubspot_only]
    rng.shuffle(hubspot_people)
    for person, overlap in hubspot_people:
        sample.hubspot.append(_hubspot_contact(rng, person, overlap))
    salesforce_people = [(person, True) for person in shared]
    salesforce_people += [(person, False) for person in salesforce_only]
    rng.shuffle(salesforce_people)
    for person, overlap in salesforce_people:
        sample.salesforce.append(_salesforce_contact(rng, person, overlap))
    return sample


def _people(rng: random.Random, count: int) -> list[Person]:
    people: list[Person] = []
    used: set[str] = set()
    for index in range(count):
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        company, domain = rng.choice(COMPANIES)
        local = f"{first}.{last}".lower()
        email = f"{local}@{domain}"
        number = 2
        while email in used:
            email = f"{local}{number}@{domain}"
            number += 1
        used.add(email)
        city, country = rng.choice(PLACES)
        people.append(
            Person(
                key=f"p{index:05d}",
                first=first,
                last=last,
                email=email,
                title=rng.choice(TITLES),
                company=company,
                city=city,
                country=country,
                phone=f"+1 {rng.randint(201, 989)} 555 {rng.randint(0, 9999):04d}",
                lifecycle=rng.choices(list(LIFECYCLE_TO_STATUS), LIFECYCLE_WEIGHTS)[0],
            )
        )
    return people


def _messy(rng: random.Random, overlap: bool, *, allow_no_last_name: bool) -> str | None:
    """At most one data problem per contact; only on contacts that exist in one app, so
    each problem has exactly one, predictable outcome."""
    if overlap:
        return None
    roll = rng.random()
    if roll < 0.02:
        return NO_EMAIL
    if roll < 0.03:
        return INVALID_EMAIL
    if allow_no_last_name and roll < 0.045:
        return NO_LAST_NAME
    return None


def _invalid_email(rng: random.Random, person: Person) -> str:
    local, domain = person.email.split("@", 1)
    broken = (
        f"{local}@{domain.split('.')[0]}",  # no top-level domain
        f"{local}.{domain}",  # no @
        f"{local}@@{domain}",
        f"{local} at {domain}",
    )
    return rng.choice(broken)


def _hubspot_contact(rng: random.Random, person: Person, overlap: bool) -> SampleContact:
    tags: set[str] = set()
    problem = _messy(rng, overlap, allow_no_last_name=True)
    fields: dict[str, Any] = {
        "email": person.email,
        "firstname": person.first,
        "lastname": person.last,
        "jobtitle": person.title,
        "company": person.company,
        "city": person.city,
        "country": person.country,
        "lifecyclestage": person.lifecycle,
        "hs_email_optout": "false",
    }
    if rng.random() < 0.8:
        fields["phone"] = person.phone
    if problem == NO_EMAIL:
        del fields["email"]
    elif problem == INVALID_EMAIL:
        fields["email"] = _invalid_email(rng, person)
    elif problem == NO_LAST_NAME:
        del fields["lastname"]
    if problem:
        tags.add(problem)
    if rng.random() < 0.03:
        fields["hs_email_optout"] = "true"
        tags.add(OPTED_OUT)
    if rng.random() < 0.70:
        fields["lists"] = [LIST_NAME]
    else:
        tags.add(NOT_IN_LIST)
    return SampleContact(person.key, "hubspot", fields, frozenset(tags), overlap)


def _salesforce_contact(rng: random.Random, person: Person, overlap: bool) -> SampleContact:
    tags: set[str] = set()
    problem = _messy(rng, overlap, allow_no_last_name=False)
    email = person.email
    if overlap and rng.random() < 0.25:
        email = _recase(rng, email)
        tags.add(CASE_DIFFERS)
    fields: dict[str, Any] = {
        "FirstName": person.first,
        "LastName": person.last,
        "Email": email,
        "Title": person.title,
        "MailingCity": person.city,
        "MailingCountry": person.country,
        "Status__c": LIFECYCLE_TO_STATUS[person.lifecycle],
    }
    if overlap and rng.random() < 0.3:
        # The apps disagree before the first sync: the system of record decides.
        fields["Title"] = rng.choice([t for t in TITLES if t != person.title])
        tags.add(VALUES_DIFFER)
    if rng.random() < 0.6:
        fields["Phone"] = person.phone
    if problem == NO_EMAIL:
        del fields["Email"]
    elif problem == INVALID_EMAIL:
        fields["Email"] = _invalid_email(rng, person)
    if problem:
        tags.add(problem)
    return SampleContact(person.key, "salesforce", fields, frozenset(tags), overlap)


def _recase(rng: random.Random, email: str) -> str:
    local, domain = email.split("@", 1)
    styles = (
        f"{local.title()}@{domain}",
        f"{local.upper()}@{domain.upper()}",
        f"{local.title()}@{domain.title()}",
    )
    return rng.choice(styles)
