#!/usr/bin/env bash
# Builds the real control plane the tests run against — kube-apiserver, kube-controller-manager,
# kubectl (one Kubernetes release) and etcd (the line that release uses) — from the Go module proxy,
# into a cache keyed by (Kubernetes, etcd, Go) versions, so a machine builds them once.
#
#   scripts/controlplane.sh          build what is missing, print the directory holding the binaries
#   scripts/controlplane.sh --dir    print that directory only (builds nothing)
#
# Versions come from the pinned tools modules under tests/controlplane/ (never `go get -u`: every
# k8s.io module stays at one release). No binary and no Kubernetes source enters the repository.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD/tests/controlplane

mod_version() { # mod_version DIR MODULE -> the version DIR/go.mod requires
  awk -v m="$2" '$1 == m && $2 ~ /^v/ { print $2; exit } $1 == "require" && $2 == m { print $3; exit }' "$1/go.mod"
}
kube=$(mod_version "$root/kube" k8s.io/kubernetes)
etcd=$(mod_version "$root/etcd" go.etcd.io/etcd/server/v3)
if ! command -v go >/dev/null 2>&1; then
  echo "controlplane: Go is needed to build kube-apiserver $kube (install Go >= 1.26: apt-get install golang-go, or from go.dev)" >&2
  exit 1
fi
gover=$(go env GOVERSION)
dir=${MCOSUP_CONTROLPLANE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mcosup/controlplane}/$kube-etcd$etcd-$gover
if [ "${1:-}" = --dir ]; then echo "$dir"; exit 0; fi

binaries=(kube-apiserver kube-controller-manager kubectl etcd)
missing=()
for b in "${binaries[@]}"; do [ -x "$dir/$b" ] || missing+=("$b"); done
if [ ${#missing[@]} -eq 0 ]; then echo "$dir"; exit 0; fi

mkdir -p "$dir"
minor=${kube#v1.}; minor=${minor%%.*}
stamp=""
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  stamp+=" -X $pkg.gitVersion=$kube -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
  stamp+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
done
# -mod=mod: the pinned go.mod/go.sum are complete; -buildvcs=false: no VCS stamp from the checkout.
export CGO_ENABLED=0 GOFLAGS="-mod=mod -buildvcs=false"
start=$SECONDS
for b in "${missing[@]}"; do
  t0=$SECONDS
  echo "controlplane: building $b (Kubernetes $kube, etcd $etcd, $gover) into $dir" >&2
  # Into a scratch directory first, so an interrupted build never leaves a half-written binary behind.
  rm -rf "$dir/.build" && mkdir -p "$dir/.build"
  if [ "$b" = etcd ]; then
    (cd "$root/etcd" && go build -trimpath -ldflags "-s -w" -o "$dir/.build/etcd" go.etcd.io/etcd/server/v3)
  else
    (cd "$root/kube" && go build -trimpath -ldflags "-s -w$stamp" -o "$dir/.build/$b" "k8s.io/kubernetes/cmd/$b")
  fi
  mv "$dir/.build/$b" "$dir/$b"
  rmdir "$dir/.build"
  echo "controlplane: $b built in $((SECONDS - t0)) s ($(du -h "$dir/$b" | cut -f1))" >&2
done
echo "controlplane: built ${missing[*]} in $((SECONDS - start)) s" >&2
echo "$dir"
