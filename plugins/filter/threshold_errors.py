# -*- coding: utf-8 -*-
# Copyright: aiplatform.observability maintainers
# Apache License 2.0 (see galaxy.yml)

from __future__ import annotations

DOCUMENTATION = r"""
name: threshold_errors
author: aiplatform.observability maintainers
version_added: "0.1.0"
short_description: Every rule a thresholds dict breaks, as messages that name the variable path and the rule
description:
  - Takes the thresholds the run would use (the collection's defaults deep-merged with C(aiplatform_thresholds))
    and returns a list of error messages, empty when they are valid. Role C(common) runs it in its preflight,
    before any host is changed, and fails with all messages at once (docs/thresholds.md,
    "What the validation accepts").
  - A signal, section or level that the schema does not name is an error, as is a value that is not a number
    (booleans included), a value outside the signal's C(min)..C(max), and levels out of order (ascending along
    O(order) where higher is worse, descending where lower is worse).
  - Each message starts with the variable path, e.g. C(aiplatform_thresholds.drift_psi.alert.warning).
options:
  _input:
    description: The merged thresholds, signal -> section -> level -> number.
    type: raw
    required: true
  schema:
    description: Per signal C(worse) (C(higher) or C(lower)), C(min), C(max) (null for unbounded) and C(sections)
      (section -> the levels it may hold); C(__common_thresholds_schema) of role C(common).
    type: dict
    required: true
  order:
    description: Per section the levels from least to most severe; C(__common_thresholds_severity_order).
    type: dict
    required: true
  min_window_samples:
    description: C(aiplatform_drift_min_window_samples), which must be a positive integer.
    type: raw
    required: true
"""

EXAMPLES = r"""
- name: Validate the thresholds
  ansible.builtin.assert:
    that: __errors | length == 0
    fail_msg: "{{ __errors }}"
  vars:
    __errors: >-
      {{ __candidate | aiplatform.observability.threshold_errors(__common_thresholds_schema,
         __common_thresholds_severity_order, aiplatform_drift_min_window_samples) }}
"""

RETURN = r"""
_value:
  description: The error messages, in the order signal, section, level (each sorted by name).
  type: list
  elements: str
"""

import json
from collections.abc import Mapping
from numbers import Number

PREFIX = "aiplatform_thresholds"


def _type_name(value):
    """The builtin type a value is (Ansible wraps strings and numbers in subclasses)."""
    for cls in type(value).__mro__:
        if cls.__module__ == "builtins" and cls is not object:
            return cls.__name__
    return type(value).__name__


def _json(value):
    return json.dumps(value, default=str)


def _num(value):
    """A number as Jinja's `~` writes it (str), so messages read like the values the user typed."""
    return str(value)


def _bound(value, infinite):
    return infinite if value is None else _num(value)


def _level_errors(path, section, levels, rule):
    errors, valid = [], []
    allowed = rule["sections"][section]
    for level in sorted(levels):
        value, lpath = levels[level], "%s.%s" % (path, level)
        if level not in allowed:
            errors.append("%s: unknown level (allowed in %s: %s)" % (lpath, section, ", ".join(allowed)))
        elif isinstance(value, bool) or not isinstance(value, Number):
            hint = ("; with -e key=value every value is a string, pass -e @file.yml or JSON instead"
                    if isinstance(value, str) else "")
            errors.append("%s: must be a number, got %s (%s)%s" % (lpath, _json(value), _type_name(value), hint))
        elif (rule.get("min") is not None and value < rule["min"]) or (rule.get("max") is not None and value > rule["max"]):
            errors.append("%s: %s is out of range, must lie between %s and %s%s"
                          % (lpath, _num(value), _bound(rule.get("min"), "-inf"), _bound(rule.get("max"), "inf"),
                             " (a ratio, 5 % is 0.05)" if rule.get("max") == 1 else ""))
        else:
            valid.append(level)
    return errors, valid


def _order_errors(signal, path, levels, ranked, worse):
    errors = []
    for a, b in zip(ranked, ranked[1:]):
        if worse == "higher" and not levels[a] < levels[b]:
            errors.append("%s.%s: must be greater than %s.%s (%s <= %s); higher values are worse for %s, so levels "
                          "must ascend in the order %s" % (path, b, path, a, _num(levels[b]), _num(levels[a]), signal,
                                                           " < ".join(ranked)))
        elif worse == "lower" and not levels[a] > levels[b]:
            errors.append("%s.%s: must be lower than %s.%s (%s >= %s); lower values are worse for %s, so levels "
                          "must descend in the order %s" % (path, b, path, a, _num(levels[b]), _num(levels[a]), signal,
                                                            " > ".join(ranked)))
    return errors


def threshold_errors(candidate, schema, order, min_window_samples):
    """Every rule `candidate` breaks, as messages naming the variable path and the rule."""
    errors = []
    if not isinstance(candidate, Mapping):
        return ["%s: must be a mapping of signal -> section -> level -> number, got %s"
                % (PREFIX, _type_name(candidate))]
    known = ", ".join(sorted(schema))
    for signal in sorted(candidate):
        sections, spath = candidate[signal], "%s.%s" % (PREFIX, signal)
        if signal not in schema:
            errors.append("%s: unknown signal (known signals: %s)" % (spath, known))
            continue
        rule = schema[signal]
        if not isinstance(sections, Mapping):
            errors.append("%s: must be a mapping of sections (%s), got %s"
                          % (spath, ", ".join(sorted(rule["sections"])), sections))
            continue
        for section in sorted(sections):
            levels, path = sections[section], "%s.%s" % (spath, section)
            if section not in rule["sections"]:
                errors.append("%s: unknown section for this signal (allowed: %s)"
                              % (path, ", ".join(sorted(rule["sections"]))))
            elif not isinstance(levels, Mapping):
                errors.append("%s: must be a mapping of levels (%s) to numbers, got %s"
                              % (path, ", ".join(rule["sections"][section]), levels))
            else:
                level_errors, valid = _level_errors(path, section, levels, rule)
                ranked = [level for level in order[section] if level in valid]
                errors += level_errors + _order_errors(signal, path, levels, ranked, rule["worse"])
    w = min_window_samples
    if isinstance(w, bool) or not isinstance(w, int) or w < 1:
        errors.append("aiplatform_drift_min_window_samples: must be a positive integer (a sample count), got %s"
                      % _json(w))
    return errors


class FilterModule(object):
    """Validation of aiplatform_thresholds."""

    def filters(self):
        return {"threshold_errors": threshold_errors}
