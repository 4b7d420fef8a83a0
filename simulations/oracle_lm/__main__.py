"""``python -m simulations.oracle_lm``: the oracle-LM benchmark from the command line."""

from simulations.oracle_lm import main

main()
