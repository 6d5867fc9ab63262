# -*- coding: utf-8 -*-
# Copyright: aiplatform.observability maintainers
# Apache License 2.0 (see galaxy.yml)

from __future__ import annotations

DOCUMENTATION = r"""
name: web_basic_auth_hashes
author: aiplatform.observability maintainers
version_added: "0.1.0"
short_description: Stable bcrypt hashes for the basic_auth_users of a Prometheus web config file
description:
  - Takes a mapping of user name to password and returns the same user names mapped to bcrypt hashes,
    in the form the exporter-toolkit web config file (C(--web.config.file) of Prometheus, Alertmanager,
    node_exporter) expects under C(basic_auth_users).
  - The bcrypt salt is derived from O(seed), the user name and the password (sha256), so the same input gives
    the same hash on every run (an unchanged password changes no file and restarts nothing), and a new password
    gives a new hash.
  - Every hash is checked against its password before it is returned.
  - Runs on the controller and needs the Python package C(bcrypt) there.
options:
  _input:
    description: Mapping of user name to password (keep the passwords in a vault).
    type: dict
    required: true
  seed:
    description: Secret mixed into the derived salt; set it to make the hashes site-specific.
    type: str
    default: ''
  cost:
    description: bcrypt cost factor (4 to 31).
    type: int
    default: 12
"""

EXAMPLES = r"""
- name: Hash the users of the web config
  ansible.builtin.set_fact:
    __example_hashes: >-
      {{ {'admin': admin_password} | aiplatform.observability.web_basic_auth_hashes(seed=salt_seed, cost=12) }}
  no_log: true
"""

RETURN = r"""
_value:
  description: Mapping of user name to bcrypt hash (C($2b$<cost>$...)), one entry per input user.
  type: dict
"""

import base64
import hashlib

from ansible.errors import AnsibleFilterError
from ansible.module_utils.common.collections import is_string
from ansible.module_utils.common.text.converters import to_bytes, to_text

try:
    import bcrypt
except ImportError as exc:
    BCRYPT_IMPORT_ERROR = exc
else:
    BCRYPT_IMPORT_ERROR = None

# The salt's 16 bytes in bcrypt's own base64 alphabet.
_STD = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_BCRYPT = "./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
_TABLE = str.maketrans(_STD, _BCRYPT)
_DOMAIN = b"aiplatform-web-auth"


def web_basic_auth_hashes(users, seed="", cost=12):
    """Return {user: bcrypt hash} for {user: password}, with a salt derived from seed, user and password."""
    if BCRYPT_IMPORT_ERROR is not None:
        raise AnsibleFilterError("web_basic_auth_hashes needs the Python package 'bcrypt' on the controller "
                                 "(pip install bcrypt): %s" % BCRYPT_IMPORT_ERROR)
    if not isinstance(users, dict):
        raise AnsibleFilterError("web_basic_auth_hashes: the input must be a mapping of user name to password, got %s"
                                 % type(users).__name__)
    if isinstance(cost, bool) or not isinstance(cost, int):
        try:
            cost = int(to_text(cost))
        except ValueError:
            raise AnsibleFilterError("web_basic_auth_hashes: cost must be an integer from 4 to 31, got %r" % (cost,))
    if not 4 <= cost <= 31:
        raise AnsibleFilterError("web_basic_auth_hashes: cost must be an integer from 4 to 31, got %d" % cost)
    seed_bytes = to_bytes(seed if seed is not None else "", errors="surrogate_or_strict")

    hashes = {}
    for name in sorted(users, key=to_text):
        password = users[name]
        if not is_string(name) or not name:
            raise AnsibleFilterError("web_basic_auth_hashes: user names must be non-empty strings, got %r" % (name,))
        if password is None or isinstance(password, (bool, dict, list)) or to_text(password) == "":
            # never echo the value: it is a password
            raise AnsibleFilterError("web_basic_auth_hashes: user %s has no password (empty or not a string)" % name)
        secret = to_bytes(to_text(password), errors="surrogate_or_strict")
        raw = hashlib.sha256(b"\0".join([_DOMAIN, seed_bytes, to_bytes(name), secret])).digest()[:16]
        salt = "$2b$%02d$%s" % (cost, base64.b64encode(raw).decode("ascii")[:22].translate(_TABLE))
        digest = bcrypt.hashpw(secret, salt.encode("ascii"))
        if not bcrypt.checkpw(secret, digest):
            raise AnsibleFilterError("web_basic_auth_hashes: bcrypt self-check failed for user %s" % name)
        hashes[to_text(name)] = to_text(digest)
    return hashes


class FilterModule(object):
    """Filters of aiplatform.observability for web config files."""

    def filters(self):
        return {"web_basic_auth_hashes": web_basic_auth_hashes}
