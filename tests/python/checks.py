"""The small check harness the Python integration tests share: check() raises CheckFailed, @case runs
one named check and records a failure in `failures` without stopping the script."""
import sys
import traceback

failures = []


def log(msg):
    print(msg, flush=True)


class CheckFailed(Exception):
    pass


def check(cond, what):
    if not cond:
        raise CheckFailed(what)


def case(name):
    """Runs one check function; a failure is recorded and the next case still runs."""

    def wrap(fn):
        def run(*args, **kwargs):
            try:
                result = fn(*args, **kwargs)
                log(f"PASS {name}")
                return result
            except CheckFailed as e:
                failures.append(f"{name}: {e}")
                log(f"FAIL {name}: {e}")
            except Exception as e:  # a client parse error, an unexpected status, ...
                failures.append(f"{name}: {type(e).__name__}: {e}")
                log(f"FAIL {name}: unexpected {type(e).__name__}: {e}")
                traceback.print_exc(file=sys.stdout)
            return None

        return run

    return wrap


def summary(passed_message):
    """Prints the failures (exit code 1) or `passed_message` (exit code 0)."""
    if failures:
        log(f"\n{len(failures)} check(s) failed:")
        for f in failures:
            log(f"  - {f}")
        return 1
    log("\n" + passed_message)
    return 0
