"""A USB device on a UHCI controller: QEMU's monitor shows it, and the
guest's kernel logged no error meanwhile."""

from phalanx.virt import exceptions, test


class USBBootTest(test.VirtTest):
    device_name = None

    def setUp(self):
        super().setUp()
        self.device_name = self.params.get("device_name", default="QEMU USB Tablet")
        self.vm.devices.add_cmdline(
            self.params.get(
                "usb_bus_cmdline", default="-device piix3-usb-uhci,id=usbtest,bus=pci.0,addr=05"
            )
        )
        self.vm.devices.add_cmdline(
            self.params.get(
                "device_cmdline", default="-device usb-tablet,id=usb-tablet,bus=usbtest.0,port=1"
            )
        )
        self.vm.power_on()
        self.vm.login_remote()
        self.vm.remote.run("dmesg -c")

    def check_io_errors(self):
        found = [
            line for line in self.vm.remote.run("dmesg").stdout.splitlines() if "error" in line
        ]
        for line in found:
            self.log.error(line)
        if found:
            raise exceptions.TestFail("errors in the guest's dmesg")

    def test_shows_monitor(self):
        reply = self.vm.qmp("human-monitor-command", **{"command-line": "info usb"})
        if self.device_name not in reply["return"]:
            raise exceptions.TestFail(f"{self.device_name} is not in the monitor's info usb")
        self.check_io_errors()

    def test_shows_guest_os(self):
        listed = self.vm.remote.run(self.params.get("check_cmd", default="lsusb"))
        if self.device_name not in listed.stdout:
            raise exceptions.TestFail(f"{self.device_name} is not in the guest's USB devices")
        self.check_io_errors()

    def tearDown(self):
        if self.vm:
            self.vm.power_off()
