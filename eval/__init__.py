"""Paired-rollout evaluation against MuJoCo: metrics, harness, reports and videos."""
