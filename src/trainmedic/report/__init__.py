"""Sinks: console, findings.json, events.jsonl and the HTML report."""
