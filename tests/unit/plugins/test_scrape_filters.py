"""The filters scrape_registrations and scrape_configs (docs/scrape-targets.md): which registration wins,
how one is removed, every validation error, and how jobs are built from them."""
import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.aiplatform.observability.plugins.filter.scrape_configs import scrape_configs
from ansible_collections.aiplatform.observability.plugins.filter.scrape_registrations import scrape_registrations

NODE = {"role": "node_exporter", "port": 9100, "unit": "prometheus-node-exporter"}
GPU = {"role": "gpu_exporter", "port": 9400, "info": {"backend": "nvml"}}


def _hv(name, local=None, run=None, **extra):
    hv = {"inventory_hostname": name}
    if local is not None:
        hv["ansible_local"] = dict(("aiplatform_scrape_%s" % job, entry) for job, entry in local.items())
    if run is not None:
        hv["aiplatform_scrape_targets"] = run
    hv.update(extra)
    return hv


def _jobs(hostvars, **kw):
    return [(r["job"], r["host"]) for r in scrape_registrations(sorted(hostvars), hostvars, **kw)]


# ------------------------------------------------------------------ scrape_registrations
def test_local_facts_are_read_and_defaults_filled():
    hv = {"gpu1": _hv("gpu1", local={"node": NODE, "gpu": GPU}, ansible_host="192.0.2.11")}
    regs = scrape_registrations(["gpu1"], hv)
    assert regs == [
        {"host": "gpu1", "job": "gpu", "role": "gpu_exporter", "port": 9400, "scheme": "http",
         "metrics_path": "/metrics", "unit": "", "info": {"backend": "nvml"}, "client": {},
         "address": "192.0.2.11:9400"},
        {"host": "gpu1", "job": "node", "role": "node_exporter", "port": 9100, "scheme": "http",
         "metrics_path": "/metrics", "unit": "prometheus-node-exporter", "info": {}, "client": {},
         "address": "192.0.2.11:9100"},
    ]


def test_local_facts_under_ansible_facts_are_read_too():
    hv = {"n1": {"inventory_hostname": "n1", "ansible_facts": {"local": {"aiplatform_scrape_node": NODE}}}}
    assert _jobs(hv) == [("node", "n1")]


def test_the_fact_of_this_run_wins_over_the_file_and_null_removes():
    hv = {"gpu1": _hv("gpu1", local={"node": NODE, "gpu": GPU},
                      run={"gpu": None, "node": dict(NODE, port=9101)})}
    regs = scrape_registrations(["gpu1"], hv, address=False)
    assert [(r["job"], r["port"]) for r in regs] == [("node", 9101)]
    assert "address" not in regs[0]


def test_other_local_facts_and_empty_files_are_ignored():
    hv = {"n1": _hv("n1", local={"node": NODE, "gpu": {}}),
          "n2": dict(_hv("n2"), ansible_local={"something_else": {"port": "x"}})}
    assert _jobs(hv) == [("node", "n1")]


def test_sorted_by_job_then_host_and_filtered_by_role():
    hv = {"b": _hv("b", run={"node": NODE, "gpu": GPU}), "a": _hv("a", run={"node": NODE}),
          "c": _hv("c", local={"gpu": GPU})}
    assert _jobs(hv) == [("gpu", "b"), ("gpu", "c"), ("node", "a"), ("node", "b")]
    assert _jobs(hv, role="gpu_exporter") == [("gpu", "b"), ("gpu", "c")]
    # duplicate names in the input count once
    assert len(scrape_registrations(["a", "a"], hv)) == 1


def test_ipv6_addresses_are_bracketed():
    hv = {"n1": _hv("n1", run={"node": NODE}, ansible_host="fd00::7")}
    assert scrape_registrations(["n1"], hv)[0]["address"] == "[fd00::7]:9100"


@pytest.mark.parametrize("entry, message", [
    (dict(NODE, port="x"), "port must be an integer 1-65535, got 'x'"),
    (dict(NODE, port=True), "port must be an integer 1-65535, got True"),
    (dict(NODE, port=70000), "port must be an integer 1-65535, got 70000"),
    (dict(NODE, scheme="ftp"), "scheme must be http or https, got 'ftp'"),
    (dict(NODE, metrics_path="metrics"), "metrics_path must start with /, got 'metrics'"),
    ({"port": 9100}, "role \\(the role that owns the job\\) must be a non-empty string"),
    (dict(NODE, client=["x"]), "client \\(the scrape settings Prometheus needs\\) must be a mapping"),
    ("9100", "must be a mapping, got str"),
])
def test_a_bad_registration_names_the_job_the_host_and_the_rule(entry, message):
    hv = {"gpu7": _hv("gpu7", local={"node": entry})}
    with pytest.raises(AnsibleFilterError, match="scrape target of job 'node' on gpu7: " + message):
        scrape_registrations(["gpu7"], hv)


def test_a_bad_job_name_and_a_bad_run_fact_are_errors():
    with pytest.raises(AnsibleFilterError, match="job name must match"):
        scrape_registrations(["n1"], {"n1": _hv("n1", run={"no de": NODE})})
    with pytest.raises(AnsibleFilterError, match="aiplatform_scrape_targets of n1 must be a mapping"):
        scrape_registrations(["n1"], {"n1": _hv("n1", run=["node"])})
    with pytest.raises(AnsibleFilterError, match="n9 is not an inventory host"):
        scrape_registrations(["n9"], {})
    with pytest.raises(AnsibleFilterError, match="must be a list of inventory host names"):
        scrape_registrations("n1", {})


def test_port_as_digits_is_accepted():
    assert scrape_registrations(["n1"], {"n1": _hv("n1", run={"node": dict(NODE, port="9100")})})[0]["port"] == 9100


# ------------------------------------------------------------------ scrape_configs
def _regs(hostvars):
    return scrape_registrations(sorted(hostvars), hostvars)


def test_one_job_per_name_one_group_per_host_defaults_left_out():
    hv = {"n2": _hv("n2", run={"node": NODE}), "n1": _hv("n1", run={"node": NODE, "gpu": GPU})}
    assert scrape_configs(_regs(hv)) == [
        {"job_name": "gpu", "static_configs": [{"targets": ["n1:9400"], "labels": {"instance": "n1"}}]},
        {"job_name": "node", "static_configs": [{"targets": ["n1:9100"], "labels": {"instance": "n1"}},
                                                {"targets": ["n2:9100"], "labels": {"instance": "n2"}}]},
    ]


def test_role_settings_and_client_settings_are_job_wide():
    am = {"role": "alertmanager", "port": 9093, "scheme": "https", "client": {"tls_config": {"ca_file": "/ca"}}}
    hv = {"m1": _hv("m1", run={"alertmanager": am})}
    job = scrape_configs(_regs(hv), client={"alertmanager": {"basic_auth": {"username": "p"}}})[0]
    assert job == {"job_name": "alertmanager", "basic_auth": {"username": "p"}, "scheme": "https",
                   "tls_config": {"ca_file": "/ca"},
                   "static_configs": [{"targets": ["m1:9093"], "labels": {"instance": "m1"}}]}


def test_hosts_registering_one_job_differently_is_an_error_naming_both():
    hv = {"n1": _hv("n1", run={"node": NODE}), "n2": _hv("n2", run={"node": dict(NODE, scheme="https")})}
    with pytest.raises(AnsibleFilterError, match="job node: hosts n1 and n2 register it with different scheme"):
        scrape_configs(_regs(hv))


def test_a_user_job_named_like_a_registered_job_names_the_variable_and_the_role():
    hv = {"g1": _hv("g1", run={"gpu": GPU})}
    with pytest.raises(AnsibleFilterError,
                       match="prometheus_platform_services: job name 'gpu' is the job of role gpu_exporter "
                             "\\(registered on g1\\)"):
        scrape_configs(_regs(hv), reserved={"prometheus_platform_services": ["vllm", "gpu"]})
    assert scrape_configs(_regs(hv), reserved={"prometheus_platform_services": ["vllm"]})[0]["job_name"] == "gpu"


def test_unreachable_hosts_keep_their_target_groups():
    previous = [
        {"job_name": "node", "static_configs": [{"targets": ["n1:9100"], "labels": {"instance": "n1"}},
                                                {"targets": ["n2:9100"], "labels": {"instance": "n2"}}]},
        {"job_name": "gpu", "scheme": "http", "static_configs": [{"targets": ["n2:9400"], "labels": {"instance": "n2"}}]},
        {"job_name": "gone", "static_configs": [{"targets": ["n3:1"], "labels": {"instance": "n3"}}]},
    ]
    hv = {"n1": _hv("n1", run={"node": NODE})}
    jobs = dict((j["job_name"], j) for j in scrape_configs(_regs(hv), keep=previous, keep_hosts=["n2"]))
    assert sorted(jobs) == ["gpu", "node"]
    assert [g["labels"]["instance"] for g in jobs["node"]["static_configs"]] == ["n1", "n2"]
    assert jobs["gpu"]["static_configs"] == [{"targets": ["n2:9400"], "labels": {"instance": "n2"}}]
    # a host that registered in this run is not also kept from the old file
    hv["n2"] = _hv("n2", run={"node": dict(NODE, port=9200)})
    jobs = dict((j["job_name"], j) for j in scrape_configs(_regs(hv), keep=previous, keep_hosts=["n2"]))
    assert jobs["node"]["static_configs"][1] == {"targets": ["n2:9200"], "labels": {"instance": "n2"}}
    assert sorted(jobs) == ["node"]


def test_input_without_addresses_is_an_error():
    hv = {"n1": _hv("n1", run={"node": NODE})}
    with pytest.raises(AnsibleFilterError, match="must come from scrape_registrations \\(with addresses\\)"):
        scrape_configs(scrape_registrations(["n1"], hv, address=False))
