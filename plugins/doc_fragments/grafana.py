# -*- coding: utf-8 -*-
# Copyright: aiplatform.observability maintainers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import absolute_import, division, print_function
__metaclass__ = type


class ModuleDocFragment(object):

    # Connection and authentication options shared by every grafana_* module.
    DOCUMENTATION = r'''
options:
  url:
    description:
      - Base URL of the Grafana server, for example C(https://grafana.example.com:3000).
      - A sub-path (C(https://example.com/grafana)) is kept; C(/api/...) is appended to it.
    type: str
    required: true
    aliases: [grafana_url]
  token:
    description:
      - "Service account token (C(glsa_...)) sent as C(Authorization: Bearer <token>)."
      - Mutually exclusive with O(url_username). One of O(token) or O(url_username) is required;
        there are no default credentials.
    type: str
  url_username:
    description:
      - User name for HTTP basic authentication, used with O(url_password).
    type: str
    aliases: [grafana_user]
  url_password:
    description:
      - Password for HTTP basic authentication.
    type: str
    aliases: [grafana_password]
  org_id:
    description:
      - Organization the request acts on, sent as the C(X-Grafana-Org-Id) header on every request.
      - When omitted, Grafana uses the organization of the token or the user's current organization.
      - The user's active organization is never switched.
    type: int
  validate_certs:
    description:
      - Verify the server's TLS certificate.
    type: bool
    default: true
  ca_path:
    description:
      - PEM file with the certificate authorities that sign the server's certificate.
    type: path
  client_cert:
    description:
      - PEM file with a client certificate for mutual TLS. Use with O(client_key) unless the file
        also holds the key.
    type: path
  client_key:
    description:
      - PEM file with the private key of O(client_cert).
    type: path
  timeout:
    description:
      - Seconds to wait for each HTTP response.
      - Connection errors, HTTP 429 and HTTP 502, 503 and 504 are retried three times with
        exponential backoff (1, 2 and 4 seconds, or the server's C(Retry-After)); other 5xx answers
        are retried for reads, updates and deletes only, never for creations.
    type: int
    default: 30
notes:
  - Objects are identified by uid only, never by title or numeric id.
  - Supports C(check_mode) and C(diff) fully; nothing is written in check mode.
  - All grafana_* modules are in the action group C(aiplatform.observability.grafana), so
    C(module_defaults) can set the connection options once.
'''
