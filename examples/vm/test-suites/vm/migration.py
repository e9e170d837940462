"""Live-migrate a VM a few times; the guest carries on through each
(its uptime keeps growing: it was never rebooted)."""

from phalanx.virt import test


def uptime(vm):
    return float(vm.remote.run("cut -d' ' -f1 /proc/uptime").stdout)


class MigrationTest(test.VirtTest):
    def test_migrate(self):
        self.vm.power_on()
        self.vm.login_remote()
        before = uptime(self.vm)
        mode = self.params.get("migration_mode", default="tcp")
        for n in xrange(self.params.get("migration_iterations", default=4)):  # noqa: F821
            seconds = self.vm.migrate(mode)
            self.log.info("migration %d (%s) took %.2fs", n + 1, mode, seconds)
            self.vm.login_remote()
            now = uptime(self.vm)
            self.assertGreater(now, before, "the guest rebooted during the migration")
            before = now

    def cleanup(self):
        if self.vm:
            self.vm.power_off()
