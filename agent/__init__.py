"""caseplan's orchestrator: routing, planning, execution, record and interfaces."""
