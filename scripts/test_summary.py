"""Print the closing line of scripts/test.sh: every pytest run's results (JUnit XML files in out/junit/, the
main suite and the SDK jobs on other Pythons) plus the one-shot jobs (`*.result` files holding "passed" or
"failed", e.g. the server smoke run on CPython 3.10), as one `N passed, N failed, N skipped` line."""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ET
from pathlib import Path


def main(folder: str) -> int:
    passed = failed = skipped = 0
    for xml in sorted(Path(folder).glob("*.xml")):
        for suite in ET.parse(xml).getroot().iter("testsuite"):
            tests, skip = int(suite.get("tests", 0)), int(suite.get("skipped", 0))
            bad = int(suite.get("failures", 0)) + int(suite.get("errors", 0))
            passed += tests - bad - skip
            failed += bad
            skipped += skip
    for result in sorted(Path(folder).glob("*.result")):
        ok = result.read_text().strip() == "passed"
        passed += ok
        failed += not ok
    print(f"{passed} passed, {failed} failed, {skipped} skipped")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "out/junit"))
