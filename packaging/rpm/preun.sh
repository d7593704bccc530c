# dds-certsync %preun ($1: 0 on erase, 1 or more on upgrade). On erase, stop and disable
# the daemon (the unit file leaves with the package). Upgrades keep both.
if [ "$1" -eq 0 ]; then
    if [ -d /run/systemd/system ]; then
        systemctl stop dds-certsync.service >/dev/null 2>&1 || :
    fi
    if command -v systemctl >/dev/null 2>&1; then
        systemctl --no-reload disable dds-certsync.service >/dev/null 2>&1 || :
    fi
fi
