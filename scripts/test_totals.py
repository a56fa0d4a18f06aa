"""Print one closing line that sums the JUnit XML files of several pytest runs (one per engine)."""
import sys
import xml.etree.ElementTree as ElementTree

COUNTS = ("tests", "failures", "errors", "skipped")


def main(paths: list[str]) -> None:
    totals = dict.fromkeys(COUNTS, 0)
    for path in paths:
        for suite in ElementTree.parse(path).getroot().iter("testsuite"):
            for count in COUNTS:
                totals[count] += int(suite.get(count, 0))
    failed = totals["failures"] + totals["errors"]
    passed = totals["tests"] - failed - totals["skipped"]
    print(f"total: {passed} passed, {failed} failed, {totals['skipped']} skipped")


if __name__ == "__main__":
    main(sys.argv[1:])
