-- Argo CD health check for datasync.io/DataSyncConnection.
-- Add it to argocd-cm as resource.customizations.health.datasync.io_DataSyncConnection
-- (see argocd-cm.yaml next to this file and docs/operations.md).
--
--   no status yet / spec not yet observed / no sync yet  -> Progressing
--   credentials rejected (CredentialsValid=False)         -> Degraded
--   last sync Failed                                      -> Degraded
--   Ready=False (invalid spec, missing Secret, conflict)  -> Degraded
--   spec.suspend: true (and nothing failing)              -> Suspended
--   last sync Succeeded and Ready=True                    -> Healthy
--   last sync PartiallySucceeded and Ready=True           -> Healthy, with the failing count:
--     the connection works; the failing records are data problems retried every run and
--     listed in status, and they must not keep the whole Argo CD application Degraded.
local hs = {}

local function condition(status, wanted)
  if status.conditions == nil then
    return nil
  end
  for _, c in ipairs(status.conditions) do
    if c.type == wanted then
      return c
    end
  end
  return nil
end

local function explain(c, fallback)
  if c ~= nil and c.message ~= nil and c.message ~= "" then
    return c.message
  end
  if c ~= nil and c.reason ~= nil then
    return c.reason
  end
  return fallback
end

local status = obj.status
if status == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the Datasync operator to pick up this connection"
  return hs
end

local generation = obj.metadata.generation
if generation ~= nil and (status.observedGeneration == nil or status.observedGeneration < generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to apply the latest spec"
  return hs
end

local credentials = condition(status, "CredentialsValid")
if credentials ~= nil and credentials.status == "False" then
  hs.status = "Degraded"
  hs.message = "Credentials rejected: " .. explain(credentials, "check the Secrets in spec.*.auth")
  return hs
end

local last = status.lastSync
if last ~= nil and last.result == "Failed" then
  hs.status = "Degraded"
  if last.error ~= nil and last.error ~= "" then
    hs.message = "Last sync failed: " .. last.error
  else
    hs.message = "Last sync failed"
  end
  return hs
end

-- The operator sets Ready=False only for problems a user must fix (an invalid spec, a
-- missing Secret or key, an object it does not own), never while merely waiting.
local ready = condition(status, "Ready")
if ready ~= nil and ready.status == "False" then
  hs.status = "Degraded"
  hs.message = "Not ready: " .. explain(ready, "see kubectl describe")
  return hs
end

if obj.spec ~= nil and obj.spec.suspend == true then
  hs.status = "Suspended"
  hs.message = "Scheduled syncs are suspended (spec.suspend)"
  return hs
end

if last == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the first sync"
  return hs
end

if ready == nil or ready.status ~= "True" then
  hs.status = "Progressing"
  hs.message = "Waiting for the connection to become Ready"
  return hs
end

hs.status = "Healthy"
if last.result == "PartiallySucceeded" then
  local failed = 0
  if last.failures ~= nil and last.failures.total ~= nil then
    failed = last.failures.total
  end
  hs.message = "Last sync partially succeeded: " .. tostring(failed) .. " record(s) failing"
else
  hs.message = "Last sync succeeded"
end
return hs
