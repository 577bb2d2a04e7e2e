"""The Datasync Kubernetes operator (Kopf): keeps each DataSyncConnection's CronJob,
identity and state store in the declared state, and reports how syncing goes."""
