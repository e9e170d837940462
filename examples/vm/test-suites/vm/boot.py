"""Power a VM on, log in, check the kernel answers, power it off."""

from phalanx.virt import test


class BootTest(test.VirtTest):
    def test_boot(self):
        self.vm.power_on()
        self.vm.login_remote()
        uname = self.vm.remote.run("uname -sr")
        self.log.info("guest kernel: %s", uname.stdout.strip())
        self.assertTrue(uname.stdout.startswith("Linux"))

    def tearDown(self):
        if self.vm:
            self.vm.power_off()
