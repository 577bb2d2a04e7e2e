"""The sandbox org's metadata: Contact, Lead, Campaign and CampaignMember fields.

Field properties follow the sObject Describe result (name, type, length, nillable,
createable, updateable, defaultedOnCreate, picklistValues, restrictedPicklist):
https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/dome_sobject_describe.htm
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

STATUS_OPTIONS = (
    "Subscriber",
    "Lead",
    "Marketing Qualified",
    "Sales Qualified",
    "Opportunity",
    "Customer",
    "Evangelist",
    "Other",
)
LEAD_STATUS_OPTIONS = (
    "Open - Not Contacted",
    "Working - Contacted",
    "Closed - Converted",
    "Closed - Not Converted",
)

ID_PREFIXES = {"Contact": "003", "Lead": "00Q", "Campaign": "701", "CampaignMember": "00v"}


@dataclass(frozen=True)
class SandboxField:
    name: str
    type: str  # Salesforce describe types: id, string, email, phone, picklist, boolean ...
    label: str
    length: int = 0
    nillable: bool = True
    createable: bool = True
    updateable: bool = True
    defaulted_on_create: bool = False
    custom: bool = False
    options: tuple[str, ...] = ()
    restricted: bool = False
    default: Any = None

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "label": self.label,
            "type": self.type,
            "length": self.length,
            "nillable": self.nillable,
            "createable": self.createable,
            "updateable": self.updateable,
            "defaultedOnCreate": self.defaulted_on_create,
            "custom": self.custom,
            "unique": False,
            "filterable": True,
            "sortable": self.type not in ("textarea",),
            "restrictedPicklist": self.restricted,
            "defaultValue": self.default,
            "picklistValues": [
                {
                    "active": True,
                    "defaultValue": option == self.default,
                    "label": option,
                    "validFor": None,
                    "value": option,
                }
                for option in self.options
            ],
        }


def _system_fields(object_label: str) -> list[SandboxField]:
    return [
        SandboxField(
            "Id",
            "id",
            f"{object_label} ID",
            length=18,
            nillable=False,
            createable=False,
            updateable=False,
            defaulted_on_create=True,
        ),
        SandboxField(
            "CreatedDate",
            "datetime",
            "Created Date",
            nillable=False,
            createable=False,
            updateable=False,
            defaulted_on_create=True,
        ),
        SandboxField(
            "LastModifiedDate",
            "datetime",
            "Last Modified Date",
            nillable=False,
            createable=False,
            updateable=False,
            defaulted_on_create=True,
        ),
        SandboxField(
            "SystemModstamp",
            "datetime",
            "System Modstamp",
            nillable=False,
            createable=False,
            updateable=False,
            defaulted_on_create=True,
        ),
    ]


def _custom_fields(status_required: bool) -> list[SandboxField]:
    return [
        SandboxField(
            "Status__c",
            "picklist",
            "Lifecycle Status",
            length=255,
            nillable=not status_required,
            custom=True,
            options=STATUS_OPTIONS,
            restricted=True,
        ),
        SandboxField("Source__c", "string", "Source", length=40, custom=True),
    ]


def contact_fields(status_required: bool = False) -> list[SandboxField]:
    return [
        *_system_fields("Contact"),
        SandboxField("FirstName", "string", "First Name", length=40),
        SandboxField("LastName", "string", "Last Name", length=80, nillable=False),
        SandboxField("Email", "email", "Email", length=80),
        SandboxField("Phone", "phone", "Business Phone", length=40),
        SandboxField("Title", "string", "Title", length=128),
        SandboxField("Department", "string", "Department", length=80),
        SandboxField("MailingCity", "string", "Mailing City", length=40),
        SandboxField("MailingCountry", "string", "Mailing Country", length=80),
        SandboxField(
            "HasOptedOutOfEmail",
            "boolean",
            "Email Opt Out",
            nillable=False,
            defaulted_on_create=True,
            default=False,
        ),
        *_custom_fields(status_required),
    ]


def lead_fields(status_required: bool = False) -> list[SandboxField]:
    return [
        *_system_fields("Lead"),
        SandboxField("FirstName", "string", "First Name", length=40),
        SandboxField("LastName", "string", "Last Name", length=80, nillable=False),
        SandboxField("Company", "string", "Company", length=255, nillable=False),
        SandboxField("Email", "email", "Email", length=80),
        SandboxField("Phone", "phone", "Phone", length=40),
        SandboxField("Title", "string", "Title", length=128),
        SandboxField("City", "string", "City", length=40),
        SandboxField("Country", "string", "Country", length=80),
        SandboxField(
            "HasOptedOutOfEmail",
            "boolean",
            "Email Opt Out",
            nillable=False,
            defaulted_on_create=True,
            default=False,
        ),
        SandboxField(
            "Status",
            "picklist",
            "Lead Status",
            length=255,
            nillable=False,
            defaulted_on_create=True,
            options=LEAD_STATUS_OPTIONS,
            restricted=True,
            default=LEAD_STATUS_OPTIONS[0],
        ),
        *_custom_fields(status_required),
    ]


def campaign_fields() -> list[SandboxField]:
    return [
        *_system_fields("Campaign"),
        SandboxField("Name", "string", "Campaign Name", length=80, nillable=False),
        SandboxField(
            "IsActive", "boolean", "Active", nillable=False, defaulted_on_create=True, default=False
        ),
    ]


def campaign_member_fields() -> list[SandboxField]:
    return [
        *_system_fields("Campaign Member"),
        SandboxField("CampaignId", "reference", "Campaign ID", length=18, nillable=False),
        SandboxField("ContactId", "reference", "Contact ID", length=18),
        SandboxField("LeadId", "reference", "Lead ID", length=18),
        SandboxField("Status", "string", "Status", length=40),
    ]
