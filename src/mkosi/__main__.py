"""``mkosi`` and ``python -m mkosi``: parse, dispatch, and the one place errors are printed."""

from __future__ import annotations

import signal
import sys
import traceback

from mkosi import log
from mkosi.errors import ConfigErrors, MkosiError


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    log.setup(debug=debug, timing="--debug-timing" in argv)
    try:
        from mkosi.verbs import run_verb

        return run_verb(argv)
    except ConfigErrors as e:
        for err in e.errors:
            log.error(err.message)
        if debug:
            traceback.print_exc()
        return e.exit_code
    except MkosiError as e:
        log.error(e.message)
        if e.hint:
            log.info(e.hint)
        if debug:
            traceback.print_exc()
        return e.exit_code
    except KeyboardInterrupt:
        log.error("Interrupted")
        return 130
    except BrokenPipeError:
        return 0
    except SystemExit as e:  # argparse's --version
        return e.code if isinstance(e.code, int) else 0
    except Exception as e:  # noqa: BLE001 - the last line of defence: one line unless --debug
        if debug:
            traceback.print_exc()
        log.error(f"internal error: {type(e).__name__}: {e} (run with --debug for the traceback)")
        return 1


def entry() -> None:
    # Also when started with SIGINT ignored (e.g. `mkosi &` from a script): an interrupt must reach us.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    sys.exit(main())


if __name__ == "__main__":
    entry()
