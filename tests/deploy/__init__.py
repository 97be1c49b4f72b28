"""Tests of the deployment files: Dockerfile, compose stack, Kubernetes manifests."""
