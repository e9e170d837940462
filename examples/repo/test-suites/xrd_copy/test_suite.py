# A suite written for XrdTest, loaded unchanged: the XrdTest names are
# provided by phalanx while this file runs.
from XrdTest.TestUtils import TestSuite


def getTestSuite():
    ts = TestSuite()
    ts.name = "xrd_copy"
    ts.clusters = ["cluster_xrd"]
    ts.machines = ["manager1", "ds1", "client1"]
    ts.tests = ["copy_to"]
    ts.schedule = dict(second="30", minute="08", hour="*", day="*", month="1")
    ts.initialize = "file://suite_init.sh"
    ts.finalize = "file://suite_finalize.sh"
    ts.logs = ["xrd-@slavename@.log"]
    ts.alert_emails = ["testers@example.org"]
    ts.alert_success = "NONE"
    ts.alert_failure = "CASE"
    return ts
