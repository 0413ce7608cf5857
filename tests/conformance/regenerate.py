#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Regenerate tests/conformance/expected/ by running the reference mkosi on every fixture.

    tools/reference-mkosi.sh                      # once: fetch the reference into /var/tmp/mkosi-reference
    python3 tests/conformance/regenerate.py       # all fixtures
    python3 tests/conformance/regenerate.py NAME  # only these
    python3 tests/conformance/regenerate.py --check   # write nothing; fail if a fixture would change

The reference is found with --reference, else $MKOSI_REFERENCE_PYTHONPATH, else
/var/tmp/mkosi-reference/usr/lib/python3/dist-packages.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import normalize as n  # noqa: E402


def generate(fixture: n.Fixture, pythonpath: Path) -> tuple[str, str]:
    """Return (normalised JSON text, normalised stderr) of the reference on this fixture."""
    with tempfile.TemporaryDirectory(prefix=f"conformance-{fixture.name}-") as tmp:
        tree = n.prepare(fixture, Path(tmp))
        code, out, err = n.run_reference(fixture, tree, pythonpath)
        ctx = n.default_context(tree)
        if code != 0:
            raise SystemExit(
                f"{fixture.name}: the reference failed with exit code {code}:\n"
                + n.normalize_stderr(err, ctx)
            )
        document = json.loads(out)
        return n.dump(n.normalize(document, ctx, preserve=fixture.preserve)), n.normalize_stderr(err, ctx)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("names", nargs="*", help="fixtures to regenerate (default: all)")
    parser.add_argument("--reference", help="PYTHONPATH of the reference mkosi")
    parser.add_argument(
        "--check", action="store_true", help="write nothing, fail if any fixture would change"
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        metavar="N",
        help="run the reference N times per fixture and fail unless every run gives the same result",
    )
    opts = parser.parse_args()

    pythonpath = n.reference_pythonpath(opts.reference)
    if not (pythonpath / "mkosi" / "__init__.py").is_file():
        print(
            f"error: no reference mkosi at {pythonpath}\n"
            "hint: run tools/reference-mkosi.sh (it prints the PYTHONPATH), then pass it with --reference "
            "or MKOSI_REFERENCE_PYTHONPATH",
            file=sys.stderr,
        )
        return 2

    fixtures = n.load_fixtures(opts.names)
    n.EXPECTED_DIR.mkdir(exist_ok=True)
    changed = []

    for fixture in fixtures:
        if fixture.corpus and not fixture.source.is_dir():
            print(f"error: {fixture.name}: corpus tree {fixture.source} not found", file=sys.stderr)
            return 2

        text, err = generate(fixture, pythonpath)
        for i in range(1, opts.repeat):
            again, again_err = generate(fixture, pythonpath)
            if (again, again_err) != (text, err):
                print(f"error: {fixture.name}: run {i + 1} differs from run 1", file=sys.stderr)
                return 1

        outputs = {fixture.expected_json: text}
        if err.strip():
            outputs[fixture.expected_stderr] = err
        elif fixture.expected_stderr.exists():
            outputs[fixture.expected_stderr] = None

        for path, content in outputs.items():
            old = path.read_text() if path.exists() else None
            if old == content:
                continue
            changed.append(path)
            if opts.check:
                continue
            if content is None:
                path.unlink()
            else:
                path.write_text(content)

        warnings = len(err.splitlines())
        print(f"{fixture.name}: ok" + (f" ({warnings} line(s) on stderr)" if warnings else ""))

    host = n.dump(n.host_facts())
    if not n.HOST_FACTS.exists() or n.HOST_FACTS.read_text() != host:
        changed.append(n.HOST_FACTS)
        if not opts.check:
            n.HOST_FACTS.write_text(host)

    # Expected files whose fixture is gone.
    if not opts.names:
        known = {f.expected_json for f in fixtures} | {f.expected_stderr for f in fixtures} | {n.HOST_FACTS}
        for stale in sorted(n.EXPECTED_DIR.iterdir()):
            if stale not in known:
                changed.append(stale)
                if not opts.check:
                    stale.unlink()

    for path in changed:
        print(f"{'would change' if opts.check else 'updated'}: {path.relative_to(n.REPO_ROOT)}")

    return 1 if opts.check and changed else 0


if __name__ == "__main__":
    sys.exit(main())
