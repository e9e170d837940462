"""The hypervisor: what runs a cluster's VMs (`core.Hypervisor`), in the
coordinator's process (`phalanx run`) or as `phalanx hypervisor`, the daemon
on a VM host (`daemon.py`)."""
