#!/usr/bin/env bash
# Create a kind cluster, build and load the Datasync image, install the chart and the
# sandbox example. For users with Docker (or Podman) and kind on their machine:
#
#   hack/kind-up.sh            # or: make kind-up
#
# Environment: CLUSTER_NAME (datasync), IMAGE (ghcr.io/datasync/datasync:dev),
# RELEASE_NAMESPACE (datasync-system), SANDBOX_NAMESPACE (datasync-sandbox),
# KIND_NODE_IMAGE (kind's default when empty). Re-running it is safe: every step is idempotent.
set -euo pipefail

CLUSTER_NAME="${CLUSTER_NAME:-datasync}"
IMAGE="${IMAGE:-ghcr.io/datasync/datasync:dev}"
RELEASE_NAMESPACE="${RELEASE_NAMESPACE:-datasync-system}"
SANDBOX_NAMESPACE="${SANDBOX_NAMESPACE:-datasync-sandbox}"
KIND_NODE_IMAGE="${KIND_NODE_IMAGE:-}"

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"

log() { printf '==> %s\n' "$*"; }
die() { printf 'kind-up: %s\n' "$*" >&2; exit 1; }

# Each sandbox app makes up its credentials at start and prints them as Secret manifests in
# its log; apply the OAuth one (the name examples/sandbox/connection.yaml refers to).
apply_sandbox_secret() {
  local app="$1" output="" attempt
  for attempt in $(seq 1 30); do
    output="$(kubectl logs -n "$SANDBOX_NAMESPACE" "deployment/$app-sandbox" 2>/dev/null || true)"
    if grep -q '^# auth type OAuth:' <<<"$output"; then
      break
    fi
    log "waiting for the $app sandbox to print its credentials ($attempt/30)"
    sleep 2
  done
  awk '/^# auth type OAuth:/ {keep=1; next} /^EOF$/ {keep=0} keep' <<<"$output" \
    | kubectl apply -n "$SANDBOX_NAMESPACE" -f -
}

for tool in docker kind kubectl helm; do
  command -v "$tool" >/dev/null 2>&1 || die "'$tool' is required on PATH (see docs/operations.md, 'kind')"
done
docker info >/dev/null 2>&1 || die "the Docker daemon is not reachable; start Docker first"

image_repository="${IMAGE%:*}"
image_tag="${IMAGE##*:}"
[[ "$image_repository" != "$IMAGE" ]] || die "IMAGE must be repository:tag, got '$IMAGE'"

if kind get clusters 2>/dev/null | grep -qx "$CLUSTER_NAME"; then
  log "kind cluster '$CLUSTER_NAME' already exists"
else
  log "creating kind cluster '$CLUSTER_NAME'"
  create_args=(create cluster --name "$CLUSTER_NAME" --wait 120s)
  if [[ -n "$KIND_NODE_IMAGE" ]]; then
    create_args+=(--image "$KIND_NODE_IMAGE")
  fi
  kind "${create_args[@]}"
fi
kubectl config use-context "kind-$CLUSTER_NAME" >/dev/null

log "building $IMAGE"
docker build --build-arg "REVISION=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)" \
  -t "$IMAGE" .

log "loading $IMAGE into the kind nodes"
kind load docker-image "$IMAGE" --name "$CLUSTER_NAME"

log "installing the chart into $RELEASE_NAMESPACE"
helm upgrade --install datasync charts/datasync \
  --namespace "$RELEASE_NAMESPACE" --create-namespace \
  --set "image.repository=$image_repository" \
  --set "image.tag=$image_tag" \
  --set image.pullPolicy=IfNotPresent \
  --set operator.allowSandboxUrls=true \
  --set 'operator.allowedHosts={hubspot-sandbox,salesforce-sandbox}' \
  --wait --timeout 5m

log "installing the sandbox example into $SANDBOX_NAMESPACE"
kubectl create namespace "$SANDBOX_NAMESPACE" --dry-run=client -o yaml | kubectl apply -f -
# The sandbox apps run from the image just built, not the published one.
sed "s|image: ghcr.io/datasync/datasync:[^[:space:]]*|image: $IMAGE|" \
  examples/sandbox/sandbox-apps.yaml | kubectl apply -n "$SANDBOX_NAMESPACE" -f -
for app in hubspot salesforce; do
  kubectl rollout status -n "$SANDBOX_NAMESPACE" "deployment/$app-sandbox" --timeout 180s
  apply_sandbox_secret "$app"
done
kubectl apply -n "$SANDBOX_NAMESPACE" -f examples/sandbox/connection.yaml

log "done"
cat <<MSG

The operator runs in $RELEASE_NAMESPACE; the sandbox connection is in $SANDBOX_NAMESPACE.

  kubectl get dsc -n $SANDBOX_NAMESPACE -w
  kubectl annotate dsc -n $SANDBOX_NAMESPACE sandbox-hubspot-salesforce \\
    datasync.io/sync-now="\$(date +%s)" --overwrite     # sync now instead of waiting
  helm test datasync -n $RELEASE_NAMESPACE
  kind delete cluster --name $CLUSTER_NAME             # when done
MSG
