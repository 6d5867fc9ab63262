"""The collection's Python exporters as their web variables serve them: plain HTTP in the default
scenario, TLS with basic auth in trixie (molecule/trixie/group_vars/all/trixie.yml). Asks the exporters
themselves (an unauthenticated or plain-HTTP request must be refused when they are protected) and
Prometheus (it scrapes each job with the scheme and credentials the role registered)."""
from conftest import WEB_PREFIX, exporter_web, http, http_json, in_group, poll, unit_http

testinfra_hosts = ["ansible://monitoring", "ansible://gpu_nodes"]


def _units(host, hostvars):
    if in_group(host, "monitoring"):
        return {"aiplatform-drift-exporter": hostvars.get("platform_exporters_drift_port", 19841),
                "aiplatform-learning-exporter": hostvars.get("platform_exporters_learning_port", 19842)}
    return {"aiplatform-gpu-exporter": hostvars.get("gpu_exporter_port", 9400)}


def test_exporters_serve_as_configured(host, hostvars):
    for unit, port in _units(host, hostvars).items():
        scheme, auth, cafile = exporter_web(hostvars, WEB_PREFIX[unit])
        status, body = unit_http(host, hostvars, unit, port)
        assert status == 200 and "# TYPE" in body, (unit, status, body[:300])
        print("%s %s: %s%s" % (host.backend.hostname, unit, scheme, " + basic auth" if auth else ""))
        bare = "%s://127.0.0.1:%s/metrics" % (scheme, port)
        if auth:
            status, body = http(host, bare, cafile=cafile)
            assert status == 401, (unit, "answered %s without credentials" % status, body[:200])
            status, _ = http(host, bare, auth=auth.partition(":")[0] + ":wrong-password", cafile=cafile)
            assert status == 401, (unit, "answered %s to a wrong password" % status)
        else:
            assert http(host, bare)[0] == 200, unit
        if scheme == "https":
            status, body = http(host, "http://127.0.0.1:%s/metrics" % port, auth=auth)
            assert status == 0, (unit, "answered plain HTTP on its TLS port: %s" % status, body[:200])


def test_web_files_stay_root_only(host, hostvars):
    """The web config and the TLS key are root-only; the exporters get them as systemd credentials."""
    prefix = "platform_exporters" if in_group(host, "monitoring") else "gpu_exporter"
    config = ("/etc/aiplatform-exporters/credentials/web-config.yml" if prefix == "platform_exporters"
              else "/etc/aiplatform-exporters/credentials/gpu-exporter-web-config.yml")
    scheme, auth, _ = exporter_web(hostvars, prefix)
    if not (scheme == "https" or auth):
        assert not host.file(config).exists, config
        return
    files = [config] + ([hostvars[prefix + "_web_tls_key_file"]] if scheme == "https" else [])
    for path in files:
        f = host.file(path)
        assert (f.user, f.group, f.mode) == ("root", "root", 0o600), (path, f.user, f.group, oct(f.mode))
        assert host.run("runuser -u aiplatform-exporter -- cat %s", path).rc != 0, path
    text = host.file(config).content_string
    assert "$2b$" in text and auth.partition(":")[2] not in text, "the web config must hold hashes, not passwords"


def test_prometheus_scrapes_each_job_as_registered(host, hostvars):
    if not in_group(host, "monitoring"):
        return
    prom_auth = ""
    users = hostvars.get("prometheus_web_basic_auth_users") or {}
    if users:
        user = hostvars.get("prometheus_web_self_scrape_user") or sorted(users)[0]
        prom_auth = "%s:%s" % (user, users[user])
    # group_vars/all: the monitoring host sees the GPU nodes' web variables too
    expected = {"drift_exporter": exporter_web(hostvars, "platform_exporters")[0],
                "learning_exporter": exporter_web(hostvars, "platform_exporters")[0],
                "gpu": exporter_web(hostvars, "gpu_exporter")[0]}
    gpu_hosts = hostvars["groups"].get("gpu_nodes", [])

    def targets():
        active = http_json(host, "http://127.0.0.1:9090/api/v1/targets?state=active", auth=prom_auth)["data"]
        return [t for t in active["activeTargets"] if t["labels"]["job"] in expected]

    def all_up():
        ts = targets()
        return ts and all(t["health"] == "up" for t in ts) and len(ts) == 2 + len(gpu_hosts)

    ok = poll(all_up, 120, 5)
    ts = targets()
    for t in ts:
        print("%s %s: %s %s %s" % (t["labels"]["job"], t["labels"]["instance"], t["scrapeUrl"], t["health"],
                                   t["lastError"]))
    assert ok, [(t["labels"]["job"], t["labels"]["instance"], t["health"], t["lastError"]) for t in ts]
    for t in ts:
        assert t["scrapeUrl"].startswith(expected[t["labels"]["job"]] + "://"), t["scrapeUrl"]
