# Runs Grove's own `grove` command (grove.entrypoints.local_process) with one change, for the
# engine benchmark (benches/engine.rs), and nothing else.
#
# Why: Grove 2.2.0's GitHub audit-log client takes its API host from the connector's `fqdn`
# setting (meant for GitHub Enterprise Server) but writes the scheme itself: its first request
# is always `https://{fqdn}/{scope}/{identity}/audit-log`. The benchmark's emulator speaks plain
# HTTP on 127.0.0.1, so this shim turns that one `https://{fqdn}/` prefix into `http://{fqdn}/`
# before Grove's own `Client._get` runs. The pages after the first are the emulator's Link-header
# URLs, which are already `http://{fqdn}/...` and pass through untouched. Grove's request
# (requests.get, headers, query parameters, retries), its Link parsing, deduplication, output
# and cache are all Grove's code, unchanged.
import sys

from grove.connectors.github import api
from grove.entrypoints.local_process import entrypoint

_grove_get = api.Client._get


def _get_over_plain_http(self, url, params=None):
    https = f"https://{self.hostname}/"
    if url.startswith(https):
        url = f"http://{self.hostname}/" + url[len(https) :]
    return _grove_get(self, url, params)


api.Client._get = _get_over_plain_http

if __name__ == "__main__":
    sys.exit(entrypoint())
