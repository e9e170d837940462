from phalanx.model import Cluster, Host, Suite
from phalanx.tags import RunContext, environment, render, tag_values

HOSTS = (
    Host(name="srv1.xrd.test", roles=("server",), aliases=("master",)),
    Host(name="cli1.xrd.test", roles=("client",)),
)
SUITE = Suite(
    name="s",
    cluster=Cluster(name="c", hosts=HOSTS),
    cases=(),
    tags={"greeting": "hi"},
    logs=("/var/log/@slavename@.log",),
)
RUN = RunContext(run_id="r1", coordinator="10.0.0.1", port=8080, proto="https")
ADDRESSES = {"srv1.xrd.test": "10.1.0.1", "cli1.xrd.test": "10.1.0.2"}


def values(host: Host = HOSTS[1]) -> dict[str, str]:
    return tag_values(SUITE, host, RUN, ADDRESSES, diskmounts="mount /dev/vda /data")


def test_xrdtest_tags_render():
    script = "@slavename@ @hostname@ @role@ @port@ @proto@ @coordinator@ @run_id@ @diskmounts@"
    assert render(script, values()) == (
        "cli1.xrd.test cli1.xrd.test client 8080 https 10.0.0.1 r1 mount /dev/vda /data"
    )


def test_other_hosts_by_full_name_short_name_and_alias():
    v = values()
    assert (
        render("@host:srv1.xrd.test@ @host:srv1@ @host:master@", v) == "10.1.0.1 10.1.0.1 10.1.0.1"
    )


def test_suite_tags_and_unknown_tags():
    assert render("@greeting@ mail me at a@b.c @nosuch@", values()) == (
        "hi mail me at a@b.c @nosuch@"
    )


def test_exported_as_phalanx_variables():
    env = environment(values())
    assert env["PHALANX_SLAVENAME"] == "cli1.xrd.test"
    assert env["PHALANX_ROLE"] == "client"
    assert env["PHALANX_HOST_SRV1_XRD_TEST"] == "10.1.0.1"
    assert env["PHALANX_HOST_SRV1"] == "10.1.0.1"
    assert env["PHALANX_TAG_GREETING"] == "hi"
    assert env["PHALANX_LOGFILES"] == "/var/log/cli1.xrd.test.log"
