# -*- coding: utf-8 -*-
# Copyright: aiplatform.observability maintainers
# Apache License 2.0 (see galaxy.yml)

from __future__ import annotations

DOCUMENTATION = r"""
name: scrape_address
author: aiplatform.observability maintainers
version_added: "0.1.0"
short_description: The address other hosts reach an inventory host at (scrape targets, database host)
description:
  - Takes the variables of one inventory host (C(hostvars[name])) and returns the address Prometheus and the
    other hosts of the collection connect to, in this order of precedence (the same for every role; see
    docs/alerts.md, "Scrape targets and their addresses").
  - First C(aiplatform_scrape_address) of that host, when set and not empty.
  - Otherwise by C(aiplatform_scrape_address_source) of that host (default C(inventory)).
  - C(inventory) is for sites whose names resolve from the Prometheus hosts (DNS or /etc/hosts) and gives
    C(ansible_host) when set, else the inventory name.
  - C(default_ipv4) and C(default_ipv6) are for networks without name resolution (the podman lab) and give the
    host's default address from its facts, gathered in the same run (C(ansible_facts.default_ipv4.address)).
    A host whose facts hold no such address is an error that names the host, never a silent fallback to the name.
  - With O(render=true) (playbooks/render.yml, no facts) C(default_ipv4) and C(default_ipv6) give the inventory name.
options:
  _input:
    description: The host's variables, C(hostvars[name]).
    type: dict
    required: true
  render:
    description: Rendering without facts; the fact-based sources fall back to the inventory name.
    type: bool
    default: false
"""

EXAMPLES = r"""
- name: Where Prometheus reaches each GPU node
  ansible.builtin.debug:
    msg: "{{ hostvars[item] | aiplatform.observability.scrape_address }}:9400"
  loop: "{{ groups['gpu_nodes'] }}"
"""

RETURN = r"""
_value:
  description: An address or host name, without port or brackets.
  type: str
"""

from ansible.errors import AnsibleFilterError
from ansible.module_utils.common.collections import is_string
from ansible.module_utils.common.text.converters import to_text

SOURCES = ("inventory", "default_ipv4", "default_ipv6")


def _get(hostvars, key, default=None):
    try:
        value = hostvars[key]
    except (KeyError, TypeError):
        return default
    except Exception:  # an undefined variable inside a templated value
        return default
    return default if value is None else value


def scrape_address(hostvars, render=False):
    """The address other hosts use to reach the host whose variables are `hostvars`."""
    if not hasattr(hostvars, "__getitem__") or is_string(hostvars):
        raise AnsibleFilterError("scrape_address: the input must be a host's variables (hostvars[name]), got %s"
                                 % type(hostvars).__name__)
    name = to_text(_get(hostvars, "inventory_hostname", "") or "")
    explicit = _get(hostvars, "aiplatform_scrape_address", "")
    if not is_string(explicit):
        raise AnsibleFilterError("aiplatform_scrape_address of %s must be a string (an address or a host name), got %s"
                                 % (name, type(explicit).__name__))
    if explicit.strip():
        return to_text(explicit.strip())
    source = _get(hostvars, "aiplatform_scrape_address_source", "inventory")
    if source not in SOURCES:
        raise AnsibleFilterError("aiplatform_scrape_address_source of %s must be one of %s, got %r"
                                 % (name, ", ".join(SOURCES), source))
    if source == "inventory":
        host = _get(hostvars, "ansible_host", "")
        return to_text(host) if is_string(host) and host.strip() else name
    if render:
        return name
    facts = _get(hostvars, "ansible_facts", {}) or {}
    address = (facts.get(source) or {}).get("address") if hasattr(facts, "get") else None
    if not address:
        raise AnsibleFilterError(
            "aiplatform_scrape_address_source=%s for %s: its facts hold no %s address (facts not gathered in this "
            "run, or no default route). Gather its facts in the run, or set aiplatform_scrape_address for %s."
            % (source, name, source.replace("default_", ""), name))
    return to_text(address)


class FilterModule(object):
    """Filters of aiplatform.observability for addressing hosts."""

    def filters(self):
        return {"scrape_address": scrape_address}
