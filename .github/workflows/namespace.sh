#!/usr/bin/env bash
# The namespace a branch deploys to, one rule for ci.yaml and cleanup.yaml:
#   main           -> bridge-downstream (the default namespace)
#   anything else  -> br-<slug>-<hash>: "br-" marks every branch namespace, so
#                     the branch roles (templates/github-oidc.j2, name prefix
#                     br-) can never reach the default namespace; the hash of the
#                     full branch name keeps two long or look-alike branches apart.
# At most 24 characters (the templates' Namespace pattern).
set -euo pipefail
branch="${1:?usage: namespace.sh BRANCH}"
if [ "$branch" = "main" ]; then
  echo "bridge-downstream"
  exit 0
fi
slug=$(printf '%s' "$branch" | tr '[:upper:]' '[:lower:]' | sed -E 's/[^a-z0-9]+/-/g; s/^-+//' | cut -c1-13 | sed -E 's/-+$//')
hash=$(printf '%s' "$branch" | sha256sum | cut -c1-7)
echo "br-${slug:+$slug-}$hash"
