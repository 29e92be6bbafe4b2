"""Many scenes on a cluster: manifests, Ray actors and a results table, on the scene engine."""
