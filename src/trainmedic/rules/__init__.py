"""Rule codes: the registry and the documentation of every code trainmedic can report."""

from trainmedic.rules.registry import RULES, Rule, all_rules, get_rule, rule

__all__ = ["RULES", "Rule", "all_rules", "get_rule", "rule"]
