#!/usr/bin/env bash
# Build the pinned test control plane (etcd, kube-apiserver, kube-controller-manager,
# kubectl, helm) from Go modules into a cache directory outside the checkout.
# Fast no-op when the stamp file for the current versions already exists.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=versions.env
source "$here/versions.env"

# Cache key: the pins (comments ignored) and this recipe; mirrored by versions_hash() in
# controlplane.py.
hash="$({ grep -Ev '^[[:space:]]*(#|$)' "$here/versions.env"; cat "$here/build.sh"; } \
  | sha256sum | cut -c1-16)"
cache_root="${DATASYNC_CLUSTER_CACHE:-$HOME/.cache/datasync-cluster}"
out="$cache_root/$hash"
bin="$out/bin"
stamp="$out/stamp"

if [[ "${1:-}" == "--print-bin-dir" ]]; then
  echo "$bin"
  exit 0
fi

if [[ -f "$stamp" ]]; then
  echo "control plane binaries up to date: $bin"
  exit 0
fi

mkdir -p "$cache_root"
exec 9>"$cache_root/$hash.lock"
if ! flock -n 9; then
  echo "build.sh: waiting for another build of $hash to finish" >&2
  flock 9
fi
if [[ -f "$stamp" ]]; then
  echo "control plane binaries up to date: $bin"
  exit 0
fi

command -v go >/dev/null || { echo "build.sh: 'go' (>= $GO_MIN_VERSION) is required on PATH" >&2; exit 1; }

export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS="-mod=mod -buildvcs=false"
jobs="${DATASYNC_CLUSTER_BUILD_JOBS:-2}"
mkdir -p "$bin"
work="$(mktemp -d "${TMPDIR:-/tmp}/datasync-cluster-build.XXXXXX")"
trap 'rm -rf "$work"' EXIT
started=$(date +%s)

log() { echo "[build.sh $(date +%H:%M:%S)] $*"; }

build_kubernetes() {
  local kver="$KUBERNETES_VERSION" minor patch stagingver mod gomod build_date
  minor="$(echo "$kver" | cut -d. -f2)"
  patch="$(echo "$kver" | cut -d. -f3)"
  stagingver="v0.${minor}.${patch}"
  mod="$work/k8s"
  mkdir -p "$mod"
  log "downloading k8s.io/kubernetes@$kver"
  gomod="$(cd "$mod" && go mod download -json "k8s.io/kubernetes@$kver" | sed -n 's/.*"GoMod": "\(.*\)",/\1/p')"
  build_date="$(cd "$mod" && go mod download -json "k8s.io/kubernetes@$kver" \
    | sed -n 's/.*"Time": "\(.*\)",*/\1/p' | head -1)"
  {
    echo "module datasync.test/k8sbuild"
    echo
    echo "go $GO_MIN_VERSION"
    echo
    echo "require k8s.io/kubernetes $kver"
    echo
    echo "replace ("
    awk '/^replace \(/{r=1;next} r&&/^\)/{r=0} r&&/=> \.\/staging/{print "\t" $1 " => " $1 " '"$stagingver"'"}' "$gomod"
    echo ")"
  } >"$mod/go.mod"
  local pkg="k8s.io/component-base/version" cpkg="k8s.io/client-go/pkg/version" ldflags="-s -w"
  local kv
  for p in "$pkg" "$cpkg"; do
    for kv in "gitVersion=$kver" "gitMajor=1" "gitMinor=$minor" \
      "gitCommit=$KUBERNETES_GIT_COMMIT" "gitTreeState=clean" "buildDate=$build_date"; do
      ldflags+=" -X $p.$kv"
    done
  done
  for cmd in kube-apiserver kube-controller-manager kubectl; do
    log "building $cmd $kver"
    (cd "$mod" && go build -p "$jobs" -trimpath -ldflags "$ldflags" \
      -o "$bin/$cmd" "k8s.io/kubernetes/cmd/$cmd")
  done
}

build_etcd() {
  local mod="$work/etcd"
  mkdir -p "$mod"
  cat >"$mod/main.go" <<'GO'
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
GO
  printf 'module datasync.test/etcdbuild\n\ngo %s\n' "$GO_MIN_VERSION" >"$mod/go.mod"
  log "building etcd $ETCD_VERSION"
  (cd "$mod" && go get "go.etcd.io/etcd/server/v3@$ETCD_VERSION" >/dev/null \
    && go mod tidy >/dev/null \
    && go build -p "$jobs" -trimpath -ldflags "-s -w" -o "$bin/etcd" .)
}

build_helm() {
  log "building helm $HELM_VERSION"
  GOBIN="$bin" GOFLAGS="-buildvcs=false" go install -p "$jobs" -trimpath \
    -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION" \
    "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
}

build_etcd
build_kubernetes
build_helm

for b in etcd kube-apiserver kube-controller-manager kubectl helm; do
  [[ -x "$bin/$b" ]] || { echo "build.sh: $bin/$b missing after build" >&2; exit 1; }
done
cp "$here/versions.env" "$out/versions.env"
echo "built $(date -u +%FT%TZ) in $(( $(date +%s) - started ))s" >"$stamp"
log "done in $(( $(date +%s) - started ))s: $bin"
