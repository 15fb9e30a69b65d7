"""What a scan row is, below every part that writes, moves or reads one.

A gate writes its log (:mod:`.log`), a stick carries it (``transfer``), the
venue shares its rows (``venue``), the organizer's desk and the manager's
merge and report read them; each of them takes the log's format from here,
never from another part:

- :mod:`.schema`: the tables, their columns and migrations, and the schemas
  a file from a stick may have;
- :mod:`.chain`: the hash chain over the rows and its verification;
- :mod:`.spreadsheet`: the rule that keeps a CSV cell from running as a
  formula;
- :mod:`.log`: the gate's own SQLite file (:class:`~.log.ScanLog`).

A row's reason codes, their words and the signal a door gives for each are
the decision's own (:class:`scanner.core.decision.Reason`), one layer down.
"""
