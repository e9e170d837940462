from XrdTest.TestUtils import TestSuite


def getTestSuite():
    ts = TestSuite("python_raises")
    ts.clusters = ["tiny"]
    ts.tests = ["ok"]
    ts.machines = pick_machines()
    return ts


def pick_machines():
    raise RuntimeError("the inventory service is down")
