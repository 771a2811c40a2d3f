"""Heal mode: policy, snapshots and forensics."""
