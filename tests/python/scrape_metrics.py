"""Scrapes verifyd's /metrics as Prometheus would and parses it with the official Python
client's OpenMetrics parser (strict: a malformed exposition fails).

Usage: scrape_metrics.py URL [API_KEY]
Prints one JSON object per sample: {"name", "labels", "value"}; exits 1 when the answer is not
200 or does not parse, printing why.
"""

import json
import sys
import urllib.error
import urllib.request

from prometheus_client.openmetrics.parser import text_string_to_metric_families


def main() -> int:
    url = sys.argv[1]
    request = urllib.request.Request(url)
    if len(sys.argv) > 2:
        request.add_header("Authorization", f"Bearer {sys.argv[2]}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            content_type = response.headers.get("Content-Type", "")
            text = response.read().decode("utf-8")
    except urllib.error.HTTPError as error:
        print(f"HTTP {error.code}: {error.read().decode('utf-8', 'replace')}")
        return 1
    if not content_type.startswith("application/openmetrics-text"):
        print(f"unexpected content type {content_type!r}")
        return 1
    try:
        families = list(text_string_to_metric_families(text))
    except ValueError as error:
        print(f"does not parse as OpenMetrics: {error}")
        return 1
    for family in families:
        for sample in family.samples:
            print(json.dumps({"name": sample.name, "labels": sample.labels, "value": sample.value}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
