"""`datasync demo`: a real sync between the HubSpot and Salesforce sandbox apps."""
