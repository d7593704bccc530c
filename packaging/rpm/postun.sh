# dds-certsync %postun ($1: 0 on erase, 1 or more on upgrade). Erase keeps the daemon's
# state (/var/lib/dds-certsync; RPM has no purge); an edited config is kept as .rpmsave.
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || :
    # An upgrade restarts a running daemon onto the new binary; a stopped one stays stopped.
    if [ "$1" -ge 1 ]; then
        systemctl try-restart dds-certsync.service >/dev/null 2>&1 || :
    fi
fi
