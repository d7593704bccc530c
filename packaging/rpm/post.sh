# dds-certsync %post ($1: 1 on install, 2 or more on upgrade). The service is installed
# disabled and never started here: the example config cannot work until the operator has
# written credentials and paths into it.
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || :
fi
if [ "$1" -eq 1 ]; then
    echo "dds-certsync: installed disabled; edit /etc/dds-certsync/config.toml, then: systemctl enable --now dds-certsync"
fi
