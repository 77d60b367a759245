"""`python -m aura_orchestrator.simulator --port 9000`: one fake upstream until Ctrl-C."""

from .upstream import main

main()
