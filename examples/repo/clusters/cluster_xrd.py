# A cluster written for XrdTest; phalanx loads it unchanged.
from XrdTest.ClusterUtils import Cluster, Disk, Host, Network


def getCluster():
    cluster = Cluster()
    cluster.name = "cluster_xrd"

    net = Network()
    net.bridgeName = "virbr_xrd"
    net.name = "net_xrd"
    net.ip = "192.168.127.1"
    net.netmask = "255.255.255.0"
    net.DHCPRange = ("192.168.127.2", "192.168.127.254")
    cluster.network = net

    cluster.defaultHost.bootImage = "slc6_testslave_ref.img"
    cluster.defaultHost.arch = "x86_64"
    cluster.defaultHost.ramSize = "1048576"

    manager = Host("manager1.xrd.test", "192.168.127.3", mac="52:54:00:65:44:65")
    ds1 = Host("ds1.xrd.test", "192.168.127.4", mac="52:54:00:65:44:66", aliases=["data1.xrd.test"])
    ds1.disks = [Disk("disk1", "20G", device="vdb", mountPoint="/data")]
    client = Host("client1.xrd.test", "192.168.127.5", mac="52:54:00:65:44:67")

    cluster.addHosts([manager, ds1, client])
    return cluster
