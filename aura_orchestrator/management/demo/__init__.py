"""`manage.py demo`'s parts: the scenario and its plan (`scenario`), the run through the
pipeline (`run`), and the history it is spread over afterwards (`history`). The command
(`management/commands/demo.py`) reads the options and prints."""
