"""`python -m tfp_realnvp`: the `tfp-realnvp` command line."""

from tfp_realnvp.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
