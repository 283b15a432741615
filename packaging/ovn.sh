#!/bin/sh
# CloudStack NetworkOrchestrator extension entry point for cloudstack-ovn.
# CloudStack runs <extensions root>/<name>/<name>.sh; this shim hands every
# argument to the binary unchanged. For an extension named other than "ovn",
# copy it to /usr/share/cloudstack-management/extensions/<name>/<name>.sh.
exec /usr/bin/cloudstack-ovn "$@"
