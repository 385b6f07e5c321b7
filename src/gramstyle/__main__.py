"""``python -m gramstyle``: the command line (see `gramstyle.apps.cli`), its signal handlers installed first."""

from .apps.entry import run

if __name__ == "__main__":
    run()
