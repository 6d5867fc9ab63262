# -*- coding: utf-8 -*-
# Copyright: aiplatform.observability maintainers
# Apache License 2.0 (see galaxy.yml)

from __future__ import annotations

DOCUMENTATION = r"""
name: threshold_slice
author: aiplatform.observability maintainers
version_added: "0.1.0"
short_description: The leaves of the effective thresholds that one consumer outside the dashboards and alert rules reads
description:
  - Takes the effective thresholds (the fact C(aiplatform_thresholds_effective)) and returns, for one named consumer,
    a flat mapping of the consumer's own setting names to the threshold leaves it reads.
  - The table of consumers is the one place that says which leaf drives which setting (docs/thresholds.md,
    "Consumers"), so a day-2 change of that leaf reaches the consumer through the same tagged run as the alert
    rules and dashboards.
  - C(drift_exporter) gives C(psi) from C(drift_psi.alert.warning) and C(kl) from
    C(drift_kl_divergence.alert.critical), the levels at which the drift exporter marks a window as drifted.
  - An unknown consumer, or effective thresholds that lack a leaf the consumer needs, is an error naming both.
options:
  _input:
    description: The effective thresholds, C(aiplatform_thresholds_effective).
    type: dict
    required: true
  consumer:
    description: The consumer's name.
    type: str
    required: true
    choices: [drift_exporter]
"""

EXAMPLES = r"""
- name: The levels the drift exporter reads
  ansible.builtin.debug:
    msg: "{{ (aiplatform_thresholds_effective | aiplatform.observability.threshold_slice('drift_exporter')).psi }}"
"""

RETURN = r"""
_value:
  description: The consumer's setting names mapped to numbers.
  type: dict
"""

from ansible.errors import AnsibleFilterError

# consumer -> its setting -> (signal, section, level) of aiplatform_thresholds
CONSUMERS = {
    "drift_exporter": {
        "psi": ("drift_psi", "alert", "warning"),
        "kl": ("drift_kl_divergence", "alert", "critical"),
    },
}


def threshold_slice(thresholds, consumer):
    """The settings of `consumer` taken from the effective thresholds."""
    if consumer not in CONSUMERS:
        raise AnsibleFilterError("threshold_slice: unknown consumer %r (known: %s)"
                                 % (consumer, ", ".join(sorted(CONSUMERS))))
    if not hasattr(thresholds, "get"):
        raise AnsibleFilterError("threshold_slice(%s): the input must be the mapping aiplatform_thresholds_effective, "
                                 "got %s" % (consumer, type(thresholds).__name__))
    result = {}
    for setting, (signal, section, level) in CONSUMERS[consumer].items():
        node = thresholds
        for key in (signal, section, level):
            node = node.get(key) if hasattr(node, "get") else None
            if node is None:
                raise AnsibleFilterError(
                    "threshold_slice(%s): aiplatform_thresholds_effective has no %s.%s.%s, which sets %s"
                    % (consumer, signal, section, level, setting))
        if isinstance(node, bool) or not isinstance(node, (int, float)):
            raise AnsibleFilterError("threshold_slice(%s): %s.%s.%s must be a number, got %r"
                                     % (consumer, signal, section, level, node))
        result[setting] = node
    return result


class FilterModule(object):
    """Filters of aiplatform.observability for the thresholds table."""

    def filters(self):
        return {"threshold_slice": threshold_slice}
