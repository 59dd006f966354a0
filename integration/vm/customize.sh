#!/bin/bash
# Runs INSIDE the guest's chroot (as root) after the packages, wheels and rootfs/ overlay are in
# place: the desktop user, the units that start at boot, what is masked. Part of the recipe hash.
set -euo pipefail

USER_NAME=desktop
USER_UID=1000

# The desktop user: not root, no sudo; in the docker group (the system engine) and in the device
# groups a desktop's logind seat ACLs (uaccess) would grant an active session.
groups=docker
for g in audio video render input; do
    getent group "$g" >/dev/null && groups+=,$g
done
useradd --uid "$USER_UID" --create-home --shell /bin/bash --groups "$groups" "$USER_NAME"
# Subordinate ids for rootless Podman.
printf '%s:100000:65536\n' "$USER_NAME" >/etc/subuid
printf '%s:100000:65536\n' "$USER_NAME" >/etc/subgid
# A lingering user manager: it runs from boot, with the session bus and the user services below.
mkdir -p /var/lib/systemd/linger
touch "/var/lib/systemd/linger/$USER_NAME"

# System units.
systemctl enable systemd-networkd.service ssh.service docker.service containerd.service \
    sandbox-vm-gamepad.service
systemctl mask systemd-networkd-wait-online.service
# Podman's boot units cost ~20 s under TCG; timers that only churn a throwaway guest.
systemctl mask podman-auto-update.service podman-auto-update.timer podman-restart.service \
    apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer e2scrub_reap.service fstrim.timer \
    man-db.timer
# The user manager's units for every user: PipeWire + WirePlumber + pipewire-pulse started with the
# manager (not only on the first client), the compositor, rootless Podman's API socket.
systemctl --global enable pipewire.socket pipewire-pulse.socket pipewire.service \
    pipewire-pulse.service wireplumber.service sandbox-weston.service podman.socket
systemctl --global mask podman-auto-update.service podman-auto-update.timer podman-restart.service

# root's and the user's authorized key (vm.sh put it at /tmp/authorized_keys).
for home in /root "/home/$USER_NAME"; do
    install -d -m 0700 "$home/.ssh"
    install -m 0600 /tmp/authorized_keys "$home/.ssh/authorized_keys"
done
chown -R "$USER_NAME:$USER_NAME" "/home/$USER_NAME/.ssh"
# Root's password locked; the console autologs nobody.
passwd -l root >/dev/null

# The small initrd (initramfs-tools/conf.d/sandbox-vm.conf) for the installed kernel.
update-initramfs -u -k all >/dev/null
